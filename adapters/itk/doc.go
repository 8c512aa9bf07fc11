// Package itk receives NHS ITK 2.x messages: SOAP 1.1 requests over HTTP(S)
// carrying a Distribution Envelope whose payloads are HL7 CDA documents or HL7
// v2 messages in their XML encoding. It journals each payload, answers the
// sender, builds the acknowledgements the sender asked for, and turns CDA
// documents into FHIR.
//
// # The request
//
// A request is a SOAP 1.1 envelope. Its header says who sent it and what it
// is, in WS-Addressing and WS-Security; its body holds one Distribution
// Envelope (namespace urn:nhs-itk:ns:201005):
//
//	<soap:Envelope>
//	  <soap:Header>
//	    <wsa:MessageID>uuid:6B1E2C3A-...</wsa:MessageID>     a UUID
//	    <wsa:Action>urn:nhs-itk:services:201005:SendCDADocument-v2-0</wsa:Action>
//	    <wsa:To>https://receiver.example/itk</wsa:To>
//	    <wsse:Security>
//	      <wsu:Timestamp wsu:Id="..."><wsu:Created/><wsu:Expires/></wsu:Timestamp>
//	      <wsse:UsernameToken><wsse:Username>pas</wsse:Username></wsse:UsernameToken>
//	  <soap:Body>
//	    <itk:DistributionEnvelope>
//	      <itk:header service="(= wsa:Action)" trackingid="(a UUID the acks refer to)">
//	        <itk:addresslist><itk:address uri="urn:nhs-uk:addressing:ods:X26"/>
//	        <itk:auditIdentity><itk:id uri="urn:nhs-uk:identity:ods:RX1"/>
//	        <itk:manifest count="1"><itk:manifestitem id="uuid_..." mimetype profileid [base64 compressed encrypted]/>
//	        <itk:senderAddress uri="urn:nhs-uk:addressing:ods:RX1"/>       where acks go
//	        <itk:handlingSpecification><itk:spec key="...:infackrequested" value="true"/>
//	      <itk:payloads count="1"><itk:payload id="uuid_...">(the CDA or v2 XML, or base64)</itk:payload>
//
// Decode checks every rule of the spec digest that needs nothing but the
// request, and Handler adds those that need the clock and the configuration
// (the timestamp window, the services offered). Each broken rule is an *Error
// with the ITK toolkit code (1000 invalid, 2100 retry, 2200 do not retry, 3000
// access denied), the Distribution Envelope error code (DE0001 ... DE0012)
// where one applies, a short rule name and the XPath of the place at fault;
// never a value, which may be patient data. The repository's
// fixtures/itk/invalid holds one request per rule, named after its code and
// rule.
//
// # The answer
//
// Handler answers SimpleMessageResponse "OK" once every payload is durable in
// the journal, and a SOAP fault with ToolkitErrorInfo (HTTP 500) otherwise. An
// HL7 v2 payload is converted to ER7 and handed to the same intake as MLLP
// messages (duplicate detection, ACK codes): AA and CA answer OK; AE and CE
// answer 2100 when the message was not stored and 2200 when it was; AR and
// CR answer 1000, or 2200 when the intake does not take that message type,
// processing id or version. A CDA payload is journaled as it is (Format
// "cda"), with its NHS number, document type and the envelope's tracking id.
// All payloads are decoded before any is journaled, so a request refused for
// its content leaves nothing behind.
//
// What the acknowledgements need (sender address, tracking id, service,
// handling specification, audit identity, document id) goes into the
// record's Peer, as Meta.Peer writes it, and MetaOf reads it back. When the
// handling specification asks for them, BuildInfrastructureAck and
// BuildBusinessAck make the acknowledgement, a Distribution Envelope of its
// own, and AckDestination (kind "itk-ack") delivers it to the sender's
// endpoint like any other delivery: retried, dead-lettered, replayable.
//
// # The HL7 v2 XML encoding
//
// A v2 message in XML names each part after its position (ADT_A01/PID/PID.3
// /CX.4/HD.1). The converter writes it as ER7 with the standard delimiters
// |^~\& whatever MSH.1 and MSH.2 said, escapes delimiters found in values
// (\F\ \S\ \R\ \E\ \T\, and CR and LF as \X0D\ \X0A\), joins repeated
// elements as repetitions, reads segment groups through, and writes
// <escape V=".br"/> as \.br\. Routes and mappings then apply to an ADT that
// arrived over ITK exactly as to one that came over MLLP.
//
// # XML safety
//
// Every document, requests and decoded payloads alike, is screened before
// libxml2 sees it: it must be UTF-8 (no NUL bytes, valid sequences, no other
// declared encoding), within the size limit, and hold no DOCTYPE. With no
// DTD there is no entity to expand, internal (billion laughs) or external
// (XXE). libxml2 then parses without entity substitution, DTD loading, network
// access or XInclude, and copying its tree into Go values refuses any entity
// reference left in it and any nesting past the depth limit. Compressed
// payloads are inflated only up to the size limit.
//
// Responses and acknowledgements are built as element trees and written by
// the one writer that escapes text and attributes (appendElement), not by
// templates. CDA headers are read with libxml2's XPath.
package itk
