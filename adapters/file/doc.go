// Package file delivers messages into a directory, a file each, or a line
// each at the end of files it appends to: the destination of kind "file" in
// the routes file.
//
// # Writing a file so that it is all there or not there at all
//
// A reader watching the directory must never see half a message, and a crash
// must never leave one. On Linux each delivery is written to an unnamed file
// in the directory it is going to (O_TMPFILE), given its mode, and linked in
// under its name once whole; a crash before the link leaves nothing. Where the
// file system cannot make unnamed files, it is written to a named temporary
// file (".spinebridge-*.tmp"; readers should skip names starting with a dot)
// and renamed. A delivery sent again (a retry, a replay) replaces the file it
// wrote before, in one step (a rename), rather than adding a second one: file
// names come from the delivery, never from a clock or a counter.
//
// A delivery counts as done only once its file and its name would survive a
// power cut: the file is synced before it is named, and the directory after. Deliveries in flight together share the directory's
// sync: after its rename each waits for one fsync of the directory begun
// after the rename, and one fsync serves every delivery waiting on that
// directory (the files' own syncs, made concurrently, the file system commits
// together). The destination asks for 32 deliveries in flight so that the
// syncs have something to share; the routes file's concurrency: key
// overrides it. With fsync off nothing is synced: a crash may then lose
// deliveries the dispatcher counted as done.
//
// # Appending: one line per delivery
//
// With append: true each delivery is written as one line, its body and a line
// feed, at the end of the file its name gives, and the default name is a file
// a day per route ({{.Received.Format "20060102"}}/{{.Route}}.{{.Ext}}, with
// .Ext "ndjson" for JSON): an archive of a day's traffic, or a feed a batch
// job picks up. A file a message costs the file system a new inode, a link
// and a sync each; appending costs a write, and the deliveries in flight
// share one fdatasync of the file, so it keeps up with far more messages a
// second (docs/architecture.md has the figures).
//
// What it changes:
//
//   - A line is all there or not there at all for a delivery counted as done.
//     Each record is one write, under the file's lock, so records never
//     interleave; a write that fails is cut back off. A crash in the middle
//     of a write can leave a torn last line, whose delivery was not counted
//     as done: the next run cuts the file back to its last line feed before
//     it appends. A reader tailing the file should read whole lines only.
//   - A body holding a line feed is refused for good (it is dead-lettered):
//     its line would read as two records. FHIR JSON from a transform never
//     holds one; HL7 v2 ends its segments with carriage returns, so a line
//     is a message whose segments end in CR. XML or pretty-printed JSON
//     belongs in a file each.
//   - Delivery is at least once. A delivery interrupted after its write but
//     before its sync returned (a crash, a stop, a failed sync) is made again
//     when the dispatcher retries it, and its line is then in the file twice:
//     a consumer keeps the first of two lines that carry the same message
//     (a bundle's id, which the transform derives from its message; MSH-10
//     and MSH-3/4 for HL7 v2).
//   - Lines of one ordering key are in the order of their messages, as the
//     dispatcher delivers a key's messages one at a time.
//   - A file stays open while it is written to; up to 16 are kept open. A
//     file a consumer moved away or removed is created afresh by the next
//     delivery, and one it truncated in place is appended to from its new
//     end. Either way the lines written between the consumer's read and its
//     taking the file are lost to it: take a day's file once the day is over.
//
// # File names
//
// The name is a text/template (see the standard library's text/template)
// executed against the delivery, giving a path relative to the directory; a
// "/" in the template makes subdirectories, which are created as needed. The
// default,
//
//	{{.Received.Format "20060102"}}/{{.MessageID}}-{{.Route}}.{{.Ext}}
//
// gives names like "20261121/1042-adt-to-pds.json": a directory a day, and in
// it one file per message and route. The template sees:
//
//	.ID           the delivery's ID: "<journal id>.<route>.<destination>"
//	.MessageID    the journal record's ID
//	.Route        the route's name
//	.Destination  the destination's name
//	.Key          the route's ordering key
//	.Type         MSH-9.1, e.g. ADT
//	.Trigger      MSH-9.2, e.g. A01
//	.Version      MSH-12.1
//	.ControlID    MSH-10
//	.Sender       MSH-3 and MSH-4 as "APP|FACILITY"
//	.NHSNumber    the patient's NHS number, when the message has one
//	.Received     when the message was received, a time.Time in UTC
//	.Ext          json, hl7, xml or ndjson from the body's content type, else bin
//
// Every value is made safe before the template sees it: "/", "\", NUL and
// other control characters become "_", and ".." becomes "__", so no value can
// make a path leave the directory; a name that would anyway (an absolute
// template, a ".." written in it) fails the delivery for good. Think before
// naming files by .NHSNumber or .ControlID: a directory listing is read by
// more people than the files are.
//
// A template that does not parse or names a field the delivery lacks is a load
// error, found by executing it once against a sample delivery. One made only
// of text, fields and .Received.Format, as the defaults are, is compiled at
// load and costs well under a microsecond a delivery; anything more (a
// pipeline, a condition, a variable) runs through text/template, at several
// microseconds.
package file
