// Package file delivers messages into a directory, one file each: the
// destination of kind "file" in the routes file.
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
// error, found by executing it once against a sample delivery.
package file
