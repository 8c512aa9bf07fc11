package file

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/spinebridge/spinebridge/routes"
)

// BenchmarkDeliver writes a new 2 KiB file per delivery with the default name
// template, from one goroutine and from 8×GOMAXPROCS goroutines (as the
// dispatcher's workers would), with fsync on (each file and its directory
// synced) and off, writing unnamed files linked into place (named=false) and
// named temporary files renamed (named=true), and appending a line each to one
// file (append). The directory is the test's temporary directory, under
// TMPDIR: what a file costs depends on the file system there.
func BenchmarkDeliver(b *testing.B) {
	body := make([]byte, 2048)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	for _, named := range []bool{false, true} {
		for _, fsync := range []bool{false, true} {
			for _, parallel := range []bool{false, true} {
				if !named && !anonymousFiles() {
					continue
				}
				benchmarkDeliver(b, body, fmt.Sprint("named=", named), fsync, parallel)
			}
		}
	}
	for _, fsync := range []bool{false, true} {
		for _, parallel := range []bool{false, true} {
			benchmarkDeliver(b, body, "append", fsync, parallel)
		}
	}
}

// benchmarkDeliver runs one way of writing: "named=false", "named=true" or
// "append".
func benchmarkDeliver(b *testing.B, body []byte, way string, fsync, parallel bool) {
	b.Run(fmt.Sprintf("%s/fsync=%v/parallel=%v", way, fsync, parallel), func(b *testing.B) {
		d := newDest(b, fmt.Sprintf("dir: %s\nfsync: %v\nappend: %v", b.TempDir(), fsync, way == "append"))
		defer d.Close()
		d.named.Store(way == "named=true")
		var next atomic.Uint64
		deliver := func(del *routes.Delivery) {
			del.MessageID = routes.ID(next.Add(1))
			if err := d.Deliver(context.Background(), del); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		if parallel {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				del := delivery("")
				del.Body = body
				for pb.Next() {
					deliver(del)
				}
			})
		} else {
			del := delivery("")
			del.Body = body
			for b.Loop() {
				deliver(del)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	})
}

// BenchmarkFileName makes the name of a file from a delivery with the default
// templates of both modes and with one that needs the general template engine
// (a pipeline), which the simple ones must not.
func BenchmarkFileName(b *testing.B) {
	for _, tc := range []struct{ name, cfg string }{
		{"default", ""},
		{"append", "\nappend: true"},
		{"pipeline", "\nname: '{{.Route | printf \"%s\"}}/{{.MessageID}}.{{.Ext}}'"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := newDest(b, "dir: "+b.TempDir()+tc.cfg)
			del := delivery("")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.fileName(del); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
