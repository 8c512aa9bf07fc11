package routes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// The outbox's part of the Local key space (see local_codec.go for the rest):
//
//	'x'                                  -> the routing cursor
//	'q' id lp(route) lp(destination)     -> a pending delivery
//	'l' id lp(route) lp(destination)     -> a dead letter
//	'e' id seq                           -> an event of the message's journey
//	'p' id                               -> ""  a replay asked for
//
// Outbox writes are not synced (see Outbox): the store's log is synced in the
// background every 100 ms, and losing the last of them only repeats work.
const (
	kindCursor     = 'x'
	kindPending    = 'q'
	kindDeadLetter = 'l'
	kindEvent      = 'e'
	kindReplay     = 'p'
)

var (
	keyCursor = []byte{kindCursor}
	_         = Outbox((*Local)(nil))
)

// deliveryKey is the key of a pending delivery or dead letter.
func deliveryKey(kind byte, p *PendingDelivery) []byte {
	k := idKey(make([]byte, 0, 32), kind, p.MessageID)
	k = appendLP(k, p.Route)
	return appendLP(k, p.Destination)
}

func encodePending(dst []byte, p *PendingDelivery) []byte {
	dst = append(dst, encodingVersion)
	dst = appendLP(dst, p.Key)
	dst = appendLP(dst, p.Transform)
	// One byte: bit 0 validate, the bits above it the issue kinds rejected.
	v := byte(p.Reject) << 1
	if p.Validate {
		v |= 1
	}
	dst = append(dst, v)
	dst = binary.AppendUvarint(dst, uint64(p.Attempts))
	dst = appendLP(dst, p.LastError)
	var nb int64
	if !p.NotBefore.IsZero() {
		nb = p.NotBefore.UnixNano()
	}
	return binary.AppendVarint(dst, nb)
}

func decodePending(key, val []byte) (PendingDelivery, []byte, error) {
	var p PendingDelivery
	if len(key) < 9 {
		return p, nil, fmt.Errorf("%w: delivery key", ErrCorrupt)
	}
	p.MessageID = ID(binary.BigEndian.Uint64(key[1:9]))
	kd := decoder{b: key[9:]}
	p.Route = kd.string()
	p.Destination = kd.string()
	if kd.bad || len(val) == 0 || val[0] != encodingVersion {
		return p, nil, fmt.Errorf("%w: delivery of record %d", ErrCorrupt, p.MessageID)
	}
	d := decoder{b: val[1:]}
	p.Key = d.string()
	p.Transform = d.string()
	if len(d.b) == 0 {
		return p, nil, fmt.Errorf("%w: delivery of record %d", ErrCorrupt, p.MessageID)
	}
	p.Validate = d.b[0]&1 == 1
	p.Reject = IssueKinds(d.b[0] >> 1)
	d.b = d.b[1:]
	p.Attempts = int(d.uvarint())
	p.LastError = d.string()
	if nb := d.varint(); nb != 0 {
		p.NotBefore = time.Unix(0, nb).UTC()
	}
	if d.bad {
		return p, nil, fmt.Errorf("%w: delivery of record %d", ErrCorrupt, p.MessageID)
	}
	return p, d.b, nil
}

func encodeEvent(dst []byte, ev *Event) []byte {
	dst = append(dst, encodingVersion)
	dst = binary.AppendVarint(dst, ev.At.UnixNano())
	for _, s := range [...]string{string(ev.Kind), ev.Route, ev.Destination, string(ev.Outcome), ev.Detail} {
		dst = appendLP(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(ev.Attempt))
	return binary.AppendVarint(dst, int64(ev.Duration))
}

func decodeEvent(val []byte) (Event, error) {
	var ev Event
	if len(val) == 0 || val[0] != encodingVersion {
		return ev, fmt.Errorf("%w: event", ErrCorrupt)
	}
	d := decoder{b: val[1:]}
	ev.At = time.Unix(0, d.varint()).UTC()
	ev.Kind = EventKind(d.string())
	ev.Route = d.string()
	ev.Destination = d.string()
	ev.Outcome = Outcome(d.string())
	ev.Detail = d.string()
	ev.Attempt = int(d.uvarint())
	ev.Duration = time.Duration(d.varint())
	if d.bad {
		return ev, fmt.Errorf("%w: event", ErrCorrupt)
	}
	return ev, nil
}

// addEvent puts ev into b, under the message it names.
func (l *Local) addEvent(b *pebble.Batch, ev Event) {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	k := idKey(make([]byte, 0, 17), kindEvent, ev.MessageID)
	k = binary.BigEndian.AppendUint64(k, l.eventSeq.Add(1))
	b.Set(k, encodeEvent(nil, &ev), nil)
}

// addEvents puts each of evs into b.
func (l *Local) addEvents(b *pebble.Batch, evs []Event) {
	for i := range evs {
		l.addEvent(b, evs[i])
	}
}

// write opens an outbox operation, runs fill on a new batch and commits it
// without a sync.
func (l *Local) write(ctx context.Context, op string, fill func(b *pebble.Batch) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	if l.readOnly {
		return fmt.Errorf("outbox: %s: %w", op, ErrReadOnly)
	}
	if err := l.enter(); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	defer l.leave()
	b := l.db.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	return nil
}

// read opens an outbox read and runs fn.
func (l *Local) read(ctx context.Context, op string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	if err := l.enter(); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	defer l.leave()
	if err := fn(); err != nil {
		return fmt.Errorf("outbox: %s: %w", op, err)
	}
	return nil
}

// Cursor returns the next record to route. See Outbox.Cursor.
func (l *Local) Cursor(ctx context.Context) (ID, error) {
	var next ID
	err := l.read(ctx, "cursor", func() (err error) {
		next, err = readCursor(l.db)
		return err
	})
	return next, err
}

// Routed stores routing's result. See Outbox.Routed.
func (l *Local) Routed(ctx context.Context, next ID, pending []PendingDelivery, events []Event) error {
	return l.write(ctx, "routed", func(b *pebble.Batch) error {
		for i := range pending {
			b.Set(deliveryKey(kindPending, &pending[i]), encodePending(nil, &pending[i]), nil)
		}
		l.addEvents(b, events)
		b.Set(keyCursor, binary.BigEndian.AppendUint64(nil, uint64(next)), nil)
		return nil
	})
}

// Settle ends or reschedules a delivery. See Outbox.Settle.
func (l *Local) Settle(ctx context.Context, p *PendingDelivery, outcome Outcome, ev Event) error {
	return l.write(ctx, "settle", func(b *pebble.Batch) error {
		key := deliveryKey(kindPending, p)
		switch outcome {
		case Delivered:
			b.Delete(key, nil)
		case Retrying:
			b.Set(key, encodePending(nil, p), nil)
		case DeadLettered:
			b.Delete(key, nil)
			v := encodePending(nil, p)
			v = appendLP(v, ev.Detail)
			v = binary.AppendVarint(v, time.Now().UnixNano())
			b.Set(deliveryKey(kindDeadLetter, p), v, nil)
		default:
			return fmt.Errorf("unknown outcome %q", outcome)
		}
		ev.MessageID = p.MessageID
		l.addEvent(b, ev)
		return nil
	})
}

// Note adds events to their messages' journeys. See Outbox.Note.
func (l *Local) Note(ctx context.Context, events []Event) error {
	return l.write(ctx, "note", func(b *pebble.Batch) error {
		l.addEvents(b, events)
		return nil
	})
}

// Pending lists the deliveries not yet settled. See Outbox.Pending.
func (l *Local) Pending(ctx context.Context, fn func(PendingDelivery) bool) error {
	return l.read(ctx, "pending", func() error {
		return l.scanDeliveries(kindPending, func(p PendingDelivery, _ []byte) bool { return fn(p) })
	})
}

// DeadLetters lists dead letters. See Outbox.DeadLetters.
func (l *Local) DeadLetters(ctx context.Context, destination string, fn func(DeadLetter) bool) error {
	return l.read(ctx, "dead letters", func() error {
		var bad error
		err := l.scanDeliveries(kindDeadLetter, func(p PendingDelivery, rest []byte) bool {
			if destination != "" && p.Destination != destination {
				return true
			}
			d := decoder{b: rest}
			dl := DeadLetter{PendingDelivery: p, Reason: d.string(), At: time.Unix(0, d.varint()).UTC()}
			if d.bad {
				bad = fmt.Errorf("%w: dead letter of record %d", ErrCorrupt, p.MessageID)
				return false
			}
			return fn(dl)
		})
		return errors.Join(err, bad)
	})
}

func (l *Local) scanDeliveries(kind byte, fn func(PendingDelivery, []byte) bool) error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		p, rest, err := decodePending(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return err
		}
		if !fn(p, rest) {
			break
		}
	}
	return it.Close()
}

// Revive makes dead letters pending again. See Outbox.Revive.
func (l *Local) Revive(ctx context.Context, letters []DeadLetter, ev Event) ([]PendingDelivery, error) {
	out := make([]PendingDelivery, 0, len(letters))
	err := l.write(ctx, "revive", func(b *pebble.Batch) error {
		for _, dl := range letters {
			p := dl.PendingDelivery
			p.Attempts, p.LastError, p.NotBefore = 0, "", time.Time{}
			b.Delete(deliveryKey(kindDeadLetter, &p), nil)
			b.Set(deliveryKey(kindPending, &p), encodePending(nil, &p), nil)
			e := ev
			e.Route, e.Destination = p.Route, p.Destination
			e.MessageID = p.MessageID
			l.addEvent(b, e)
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DiscardDeadLetters gives up for good on the dead letters for destination
// ("" for all) and returns how many there were. Each leaves the outbox with a
// discarded event in its message's journey; the message is then kept only as
// long as the journal's retention, which keeps a dead-lettered one for ever.
func (l *Local) DiscardDeadLetters(ctx context.Context, destination string) (int, error) {
	var letters []DeadLetter
	if err := l.DeadLetters(ctx, destination, func(dl DeadLetter) bool {
		letters = append(letters, dl)
		return true
	}); err != nil || len(letters) == 0 {
		return 0, err
	}
	err := l.write(ctx, "discard", func(b *pebble.Batch) error {
		for i := range letters {
			p := &letters[i].PendingDelivery
			b.Delete(deliveryKey(kindDeadLetter, p), nil)
			l.addEvent(b, Event{MessageID: p.MessageID, Kind: EventDiscarded, Route: p.Route, Destination: p.Destination})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(letters), nil
}

// RequestReplay asks for a message to be routed again. See Outbox.RequestReplay.
func (l *Local) RequestReplay(ctx context.Context, id ID) error {
	// Held against a retention pass from the check to the write, so that the
	// record is not removed before the request that keeps it is stored.
	l.replayMu.Lock()
	defer l.replayMu.Unlock()
	if _, err := l.Get(ctx, id); err != nil {
		return err
	}
	err := l.write(ctx, "replay", func(b *pebble.Batch) error {
		b.Set(idKey(nil, kindReplay, id), nil, nil)
		l.addEvent(b, Event{MessageID: id, Kind: EventReplay})
		return nil
	})
	if err == nil {
		l.notify()
	}
	return err
}

// Replays lists the replays asked for. See Outbox.Replays.
func (l *Local) Replays(ctx context.Context) ([]ID, error) {
	var ids []ID
	err := l.read(ctx, "replays", func() error {
		it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindReplay}, UpperBound: []byte{kindReplay + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if id, ok := keyID(it.Key()); ok {
				ids = append(ids, id)
			}
		}
		return it.Close()
	})
	return ids, err
}

// Replayed stores a replay's routing. See Outbox.Replayed.
func (l *Local) Replayed(ctx context.Context, id ID, pending []PendingDelivery, events []Event) error {
	return l.write(ctx, "replayed", func(b *pebble.Batch) error {
		for i := range pending {
			// A replay starts the delivery afresh, whatever became of it before.
			b.Delete(deliveryKey(kindDeadLetter, &pending[i]), nil)
			b.Set(deliveryKey(kindPending, &pending[i]), encodePending(nil, &pending[i]), nil)
		}
		l.addEvents(b, events)
		b.Delete(idKey(nil, kindReplay, id), nil)
		return nil
	})
}

// Events returns a message's journey. See Outbox.Events.
func (l *Local) Events(ctx context.Context, id ID) ([]Event, error) {
	var evs []Event
	err := l.read(ctx, "events", func() error {
		lo := idKey(nil, kindEvent, id)
		it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: idKey(nil, kindEvent, id+1)})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			ev, err := decodeEvent(it.Value())
			if err != nil {
				it.Close()
				return err
			}
			ev.MessageID = id
			evs = append(evs, ev)
		}
		return it.Close()
	})
	return evs, err
}

// Appended returns the channel the committer signals. See Outbox.Appended.
func (l *Local) Appended() <-chan struct{} { return l.appended }

// notify wakes whoever waits on Appended, without blocking.
func (l *Local) notify() {
	select {
	case l.appended <- struct{}{}:
	default:
	}
}
