package routes

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppendParallel appends 1 KiB messages durably from 64 goroutines, as
// 64 MLLP connections would, and reports records/s, the latency of one Append
// (p50, p99), and the process's CPU time per record (user and system, the
// store's background work included), which this shared machine's noise moves
// less than the rest.
func BenchmarkAppendParallel(b *testing.B) {
	j, _ := openTest(b)
	const writers = 64
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((writers + procs - 1) / procs)
	b.SetBytes(1024)
	b.ReportAllocs()
	var (
		mu  sync.Mutex
		lat []time.Duration
		n   int
	)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		w := n
		mu.Unlock()
		tmpl := testRecord(w)
		tmpl.Raw = hl7Message(tmpl.ControlID, tmpl.NHSNumber, 1024)
		local := make([]time.Duration, 0, 1024)
		for i := 0; pb.Next(); i++ {
			rec := *tmpl
			rec.Received = time.Time{}
			rec.ControlID = strconv.Itoa(w) + "-" + strconv.Itoa(i)
			start := time.Now()
			if err := j.Append(context.Background(), &rec); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkFindControlID is the duplicate check the intake makes before each
// append, against a journal of 10,000 records.
func BenchmarkFindControlID(b *testing.B) {
	j, _ := openTest(b)
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < 10000; i += 64 {
				if err := j.Append(context.Background(), testRecord(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	since := testRecord(0).Received
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := j.FindControlID(context.Background(), "PAS|RX1", "MSG"+strconv.Itoa(i%10000), since); err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
