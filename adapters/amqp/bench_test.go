package amqp

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/spinebridge/spinebridge/routes"
)

// publishers is how many goroutines deliver at once in BenchmarkPublish, as
// the dispatcher's workers would.
const publishers = 64

// BenchmarkPublish measures confirmed deliveries per second through one
// publisher into a durable queue on the local broker: persistent messages, so
// each confirm waits for the broker's disk.
func BenchmarkPublish(b *testing.B) {
	for _, channels := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("channels=%d", channels), func(b *testing.B) {
			benchmarkPublish(b, channels)
		})
	}
}

func benchmarkPublish(b *testing.B, channels int) {
	adm := admin(b)
	ex := exchange(b, adm)
	q := queue(b, adm, ex, "#", nil)
	p, err := New("events", Config{URL: brokerURL, Exchange: &ex, RoutingKey: "{{route}}.{{type}}.{{trigger}}", Channels: channels}, testLog(b))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if err := p.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 2048) // about a small transaction Bundle
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var seq atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(max(1, publishers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := delivery(0, "adt-to-pds")
		d.Body = body
		for pb.Next() {
			n := seq.Add(1)
			d.ID = fmt.Sprintf("%d.adt-to-pds.events", n)
			d.MessageID = routes.ID(n)
			if err := p.Deliver(ctx, d); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if _, err := adm.QueuePurge(q, false); err != nil {
		b.Fatal(err)
	}
}
