package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/adapters/mllp"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generators for measuring a running engine",
	}
	cmd.AddCommand(newBenchMLLPCommand())
	return cmd
}

// benchMLLPOptions are the flags of bench mllp.
type benchMLLPOptions struct {
	addr     string
	conns    int
	duration time.Duration
	warmup   time.Duration
	rate     float64
	timeout  time.Duration
}

func newBenchMLLPCommand() *cobra.Command {
	var o benchMLLPOptions
	cmd := &cobra.Command{
		Use:   "mllp --addr HOST:PORT [--conns N] [--duration D] [--rate R] FILE...",
		Short: "Send HL7 v2 messages over many MLLP connections and report throughput and ACK latency",
		Long: `Bench mllp opens --conns connections to an MLLP receiver and sends the messages of
FILE... round-robin for --duration, each with a unique MSH-10 so that no receiver
takes them for duplicates. Each connection waits for a message's ACK before
sending the next (MLLP allows no more without pipelining).

Without --rate every connection sends as fast as ACKs come back: the result is
the receiver's throughput. With --rate R (messages/s across all connections) the
sends follow a fixed schedule, and latency counts from when a message was due,
not when it was sent, so a stalled receiver is charged for the messages it
delayed. Latencies go into an HDR histogram; the report gives p50, p99, p99.9.

A --warmup period runs first and is not counted.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.addr == "" {
				return usageError{errors.New("bench mllp: --addr HOST:PORT is required")}
			}
			if o.conns < 1 || o.duration <= 0 || o.rate < 0 {
				return usageError{errors.New("bench mllp: --conns and --duration must be positive, --rate not negative")}
			}
			var templates []benchTemplate
			for _, name := range args {
				data, err := readInput(cmd.InOrStdin(), name)
				if err != nil {
					return err
				}
				msgs, err := hl7v2.SplitMessages(data)
				if err != nil && len(msgs) == 0 {
					return fmt.Errorf("bench mllp: %s: %w", name, err)
				}
				for _, msg := range msgs {
					t, err := newBenchTemplate(msg)
					if err != nil {
						return fmt.Errorf("bench mllp: %s: %w", name, err)
					}
					templates = append(templates, t)
				}
			}
			res, err := benchMLLP(cmd.Context(), o, templates)
			if err != nil {
				return err
			}
			res.print(cmd.OutOrStdout(), o)
			if res.failed > 0 || res.sent == 0 {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "MLLP address of the receiver, HOST:PORT")
	f.IntVar(&o.conns, "conns", 64, "concurrent connections")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "measured run time")
	f.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run time before it")
	f.Float64Var(&o.rate, "rate", 0, "messages/s across all connections; 0 sends as fast as ACKs return")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "time allowed for each ACK")
	return cmd
}

// benchTemplate is a message split around its MSH-10, so each send can carry a
// fresh control id without reparsing.
type benchTemplate struct{ head, tail []byte }

func newBenchTemplate(msg []byte) (benchTemplate, error) {
	m, err := hl7v2.Parse(msg)
	if err != nil {
		return benchTemplate{}, err
	}
	id := m.Segment(0).Field(10).Bytes()
	if len(id) == 0 {
		return benchTemplate{}, errors.New("message has no MSH-10 to vary")
	}
	at := cap(msg) - cap(id) // offset of MSH-10 in msg
	return benchTemplate{head: msg[:at], tail: msg[at+len(id):]}, nil
}

// benchResult is what a run measured.
type benchResult struct {
	sent, acked, failed int64
	codes               map[string]int64
	elapsed             time.Duration
	hist                *hdrhistogram.Histogram // microseconds
	firstErr            error
}

func (r *benchResult) print(w io.Writer, o benchMLLPOptions) {
	mode := "closed loop (as fast as ACKs return)"
	if o.rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f messages/s", o.rate)
	}
	fmt.Fprintf(w, "target       %s, %d connections, %s measured after %s warm-up, %s\n", o.addr, o.conns, o.duration, o.warmup, mode)
	fmt.Fprintf(w, "messages     %d sent, %d acknowledged AA/CA, %d failed\n", r.sent, r.acked, r.failed)
	fmt.Fprintf(w, "throughput   %.0f messages/s\n", float64(r.acked)/r.elapsed.Seconds())
	q := func(p float64) string { return fmtMicros(r.hist.ValueAtQuantile(p)) }
	fmt.Fprintf(w, "ack latency  p50 %s  p99 %s  p99.9 %s  max %s\n", q(50), q(99), q(99.9), fmtMicros(r.hist.Max()))
	if len(r.codes) > 0 {
		fmt.Fprintf(w, "ack codes   ")
		for _, c := range []string{"AA", "CA", "AE", "AR", "CE", "CR", "timeout", "error"} {
			if n := r.codes[c]; n > 0 {
				fmt.Fprintf(w, " %s=%d", c, n)
			}
		}
		fmt.Fprintln(w)
	}
	if r.firstErr != nil {
		fmt.Fprintf(w, "first error  %v\n", r.firstErr)
	}
}

func fmtMicros(us int64) string {
	return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) + "ms"
}

// benchMLLP runs the load and gathers the result.
func benchMLLP(ctx context.Context, o benchMLLPOptions, templates []benchTemplate) (*benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		measuring atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		res       = &benchResult{codes: map[string]int64{}, hist: hdrhistogram.New(1, 60_000_000, 3)}
	)
	start := time.Now()
	// Control ids carry the run's start time, so a second run within the
	// receiver's duplicate window is not answered from the first run's ACKs.
	runID := strconv.FormatInt(start.UnixMilli(), 36)
	measureFrom := start.Add(o.warmup)
	stopAt := measureFrom.Add(o.duration)
	for c := 0; c < o.conns; c++ {
		conn, err := net.DialTimeout("tcp", o.addr, 10*time.Second)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("bench mllp: connection %d: %w", c+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			w := benchWorker{conn: conn, runID: runID, id: c, templates: templates, timeout: o.timeout,
				hist: hdrhistogram.New(1, 60_000_000, 3), codes: map[string]int64{}}
			var interval time.Duration
			if o.rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(o.conns) / o.rate)
			}
			w.run(ctx, start.Add(time.Duration(c)*interval/time.Duration(o.conns)), interval, measureFrom, stopAt, &measuring)
			mu.Lock()
			defer mu.Unlock()
			res.sent += w.sent
			res.acked += w.acked
			res.failed += w.failed
			for k, v := range w.codes {
				res.codes[k] += v
			}
			res.hist.Merge(w.hist)
			if res.firstErr == nil {
				res.firstErr = w.err
			}
		}()
	}
	go func() {
		select {
		case <-time.After(time.Until(measureFrom)):
			measuring.Store(true)
		case <-ctx.Done():
		}
	}()
	wg.Wait()
	res.elapsed = o.duration
	return res, nil
}

// benchWorker drives one connection.
type benchWorker struct {
	conn      net.Conn
	runID     string // prefix of this run's control ids
	id        int
	templates []benchTemplate
	timeout   time.Duration

	sent, acked, failed int64
	codes               map[string]int64
	hist                *hdrhistogram.Histogram
	err                 error
}

func (w *benchWorker) run(ctx context.Context, first time.Time, interval time.Duration, measureFrom, stopAt time.Time, measuring *atomic.Bool) {
	fr := mllp.NewFrameReader(w.conn, mllp.FrameOptions{})
	var (
		out, msg, id []byte
		ack          hl7v2.Message
		due          = first
		wait         = time.NewTimer(0)
	)
	defer wait.Stop()
	for seq := 0; ; seq++ {
		if interval > 0 {
			if d := time.Until(due); d > 0 {
				wait.Reset(d)
				select {
				case <-wait.C:
				case <-ctx.Done():
					return
				}
			}
		} else {
			due = time.Now()
		}
		if !due.Before(stopAt) || ctx.Err() != nil {
			return
		}
		t := w.templates[seq%len(w.templates)]
		id = append(append(id[:0], 'B'), w.runID...)
		id = strconv.AppendInt(id, int64(w.id), 36)
		id = append(id, 'x')
		id = strconv.AppendInt(id, int64(seq), 36)
		msg = append(append(append(msg[:0], t.head...), id...), t.tail...)
		out = mllp.AppendFrame(out[:0], msg)

		counted := measuring.Load() && !due.Before(measureFrom)
		w.conn.SetDeadline(time.Now().Add(w.timeout))
		code, err := w.exchange(fr, out, id, &ack)
		if counted {
			w.sent++
			w.codes[code]++
			if code == "AA" || code == "CA" {
				w.acked++
				w.hist.RecordValue(max(time.Since(due).Microseconds(), 1))
			} else {
				w.failed++
			}
		}
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			return // the connection's framing can no longer be trusted
		}
		due = due.Add(interval)
	}
}

// exchange sends one framed message and reads its ACK, returning MSA-1 (or
// "timeout" or "error").
func (w *benchWorker) exchange(fr *mllp.FrameReader, frame, id []byte, ack *hl7v2.Message) (string, error) {
	if _, err := w.conn.Write(frame); err != nil {
		return "error", err
	}
	reply, err := fr.ReadFrame()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout", err
		}
		return "error", err
	}
	if err := ack.Parse(reply); err != nil {
		return "error", fmt.Errorf("unparseable ACK: %w", err)
	}
	msa, _ := ack.Find("MSA", 1)
	if !bytes.Equal(msa.Field(2).Bytes(), id) {
		return "error", errors.New("ACK answers another message (MSA-2)")
	}
	return string(msa.Field(1).Bytes()), nil
}
