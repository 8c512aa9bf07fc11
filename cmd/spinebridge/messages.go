package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/routes"
)

func newMessagesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "messages",
		Short: "List and show the messages in the journal",
		Long: `Messages reads the journal in --data-dir: every message the engine received,
with where it came from, its ACK and its status. While an engine runs on that
journal, it is read through the engine's admin API (--admin-addr).`,
	}
	cmd.PersistentFlags().String("data-dir", "./data", "directory of the journal (config data_dir)")
	cmd.PersistentFlags().String("admin-addr", ":8081", "admin address of the engine holding the journal, used while it runs (config admin.addr)")
	cmd.AddCommand(newMessagesListCommand(), newMessagesShowCommand(), newMessagesReplayCommand(), newMessagesDeadLettersCommand())
	return cmd
}

// openJournal opens the journal of the configured data directory for reading.
// While an engine holds it, the journal is read through that engine's admin API
// instead: admin is then its base URL and j is nil.
func openJournal(cmd *cobra.Command) (j *routes.Local, admin string, err error) {
	cfg, err := loadConfig(cmd, map[string]string{"data_dir": "data-dir", "admin.addr": "admin-addr"})
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(cfg.DataDir, "journal")
	j, err = routes.OpenLocal(dir, routes.LocalOptions{ReadOnly: true})
	if errors.Is(err, routes.ErrLocked) {
		host, port, splitErr := net.SplitHostPort(cfg.Admin.Addr)
		if splitErr != nil {
			return nil, "", fmt.Errorf("journal in %s is held by a running engine, and admin.addr %q is not HOST:PORT", dir, cfg.Admin.Addr)
		}
		if host == "" {
			host = "127.0.0.1"
		}
		return nil, "http://" + net.JoinHostPort(host, port), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("open journal in %s: %w", dir, err)
	}
	return j, "", nil
}

// adminGet fetches path from a running engine's admin API.
func adminGet(ctx context.Context, base, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the journal is held by a running engine, and its admin API did not answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, routes.ErrNotFound
	case http.StatusGone:
		resp.Body.Close()
		return nil, routes.ErrRemoved
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return resp.Body, nil
}

func newMessagesListCommand() *cobra.Command {
	var (
		q            routes.Query
		status       string
		since, until string
		format       string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List journaled messages, newest first, with filters",
		Long: `List prints the journaled messages that match every filter given, newest first.
--since and --until take an RFC 3339 time (2026-11-21T09:30:00Z) or a duration
back from now (15m, 2h). --format json prints one JSON object per line.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			now := time.Now()
			if q.Since, err = parseWhen(since, now); err != nil {
				return usageError{fmt.Errorf("messages list: --since: %w", err)}
			}
			if q.Until, err = parseWhen(until, now); err != nil {
				return usageError{fmt.Errorf("messages list: --until: %w", err)}
			}
			q.Status = routes.Status(status)
			q.Descending = true
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("messages list: --format %q: want table or json", format)}
			}
			j, admin, err := openJournal(cmd)
			if err != nil {
				return err
			}
			if j == nil {
				return listMessagesVia(cmd.Context(), admin, q, format, cmd.OutOrStdout())
			}
			defer j.Close(context.Background())
			return listMessages(cmd.Context(), j, q, format, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.ControlID, "control-id", "", "only messages with this MSH-10")
	f.StringVar(&q.NHSNumber, "nhs-number", "", "only messages about this NHS number")
	f.StringVar(&status, "status", "", "only messages with this status (accepted, rejected, error, duplicate)")
	f.StringVar(&since, "since", "", "only messages received at or after this time")
	f.StringVar(&until, "until", "", "only messages received before this time")
	f.IntVar(&q.Limit, "limit", 100, "at most this many messages; 0 for all")
	f.StringVar(&format, "format", "table", "table or json")
	return cmd
}

// queryFromURL reads a journal query from URL parameters, as the admin API takes it.
func queryFromURL(v url.Values) (routes.Query, error) {
	q := routes.Query{
		ControlID:  v.Get("control_id"),
		NHSNumber:  v.Get("nhs_number"),
		Status:     routes.Status(v.Get("status")),
		Limit:      100,
		Descending: true,
	}
	var err error
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("limit %q: want a number, 0 for all", s)
		}
	}
	now := time.Now()
	if q.Since, err = parseWhen(v.Get("since"), now); err != nil {
		return q, fmt.Errorf("since: %w", err)
	}
	if q.Until, err = parseWhen(v.Get("until"), now); err != nil {
		return q, fmt.Errorf("until: %w", err)
	}
	return q, nil
}

// parseWhen reads an RFC 3339 time or a duration back from now; empty is zero.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// messageJSON is one line of `messages list --format json`.
type messageJSON struct {
	ID        string    `json:"id"`
	Received  time.Time `json:"received"`
	Status    string    `json:"status"`
	AckCode   string    `json:"ack_code,omitempty"`
	ControlID string    `json:"control_id"`
	Type      string    `json:"type"`
	Trigger   string    `json:"trigger,omitempty"`
	Version   string    `json:"version,omitempty"`
	Sender    string    `json:"sender,omitempty"`
	NHSNumber string    `json:"nhs_number,omitempty"`
	Listener  string    `json:"listener,omitempty"`
	Peer      string    `json:"peer,omitempty"`
	Size      int       `json:"size"`
}

func toJSON(r *routes.Record) messageJSON {
	return messageJSON{
		ID: r.ID.String(), Received: r.Received, Status: string(r.Status), AckCode: r.AckCode,
		ControlID: r.ControlID, Type: r.Type, Trigger: r.Trigger, Version: r.Version,
		Sender: r.Sender, NHSNumber: r.NHSNumber, Listener: r.Listener, Peer: r.Peer, Size: len(r.Raw),
	}
}

// messageWriter prints records as a table or as JSON lines.
type messageWriter struct {
	enc *json.Encoder
	tw  *tabwriter.Writer
}

func newMessageWriter(w io.Writer, format string) *messageWriter {
	if format == "json" {
		return &messageWriter{enc: json.NewEncoder(w)}
	}
	mw := &messageWriter{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(mw.tw, "ID\tRECEIVED\tSTATUS\tACK\tTYPE\tCONTROL ID\tSENDER\tNHS NUMBER")
	return mw
}

func (mw *messageWriter) write(m messageJSON) error {
	if mw.enc != nil {
		return mw.enc.Encode(m)
	}
	typ := m.Type
	if m.Trigger != "" {
		typ += "^" + m.Trigger
	}
	_, err := fmt.Fprintf(mw.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Received.Format(time.RFC3339),
		m.Status, m.AckCode, typ, m.ControlID, m.Sender, m.NHSNumber)
	return err
}

func (mw *messageWriter) flush() error {
	if mw.tw != nil {
		return mw.tw.Flush()
	}
	return nil
}

func listMessages(ctx context.Context, j routes.Journal, q routes.Query, format string, w io.Writer) error {
	mw := newMessageWriter(w, format)
	var werr error
	err := j.List(ctx, q, func(r *routes.Record) bool {
		werr = mw.write(toJSON(r))
		return werr == nil
	})
	return errors.Join(err, werr, mw.flush())
}

// listMessagesVia lists through a running engine's admin API.
func listMessagesVia(ctx context.Context, admin string, q routes.Query, format string, w io.Writer) error {
	v := url.Values{"control_id": {q.ControlID}, "nhs_number": {q.NHSNumber}, "status": {string(q.Status)}, "limit": {strconv.Itoa(q.Limit)}}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	body, err := adminGet(ctx, admin, "/messages?"+v.Encode())
	if err != nil {
		return err
	}
	defer body.Close()
	mw := newMessageWriter(w, format)
	dec := json.NewDecoder(body)
	for {
		var m messageJSON
		if err := dec.Decode(&m); err == io.EOF {
			return mw.flush()
		} else if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		if err := mw.write(m); err != nil {
			return err
		}
	}
}

func newMessagesShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one journaled message: its metadata, its journey, the message and the ACK sent",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := routes.ParseID(args[0])
			if err != nil {
				return usageError{fmt.Errorf("messages show: %q is not a journal id", args[0])}
			}
			j, admin, err := openJournal(cmd)
			if err != nil {
				return err
			}
			if j == nil {
				body, err := adminGet(cmd.Context(), admin, "/messages/"+id.String())
				if err != nil {
					return messageError("messages show", id, err)
				}
				defer body.Close()
				_, err = io.Copy(cmd.OutOrStdout(), body)
				return err
			}
			defer j.Close(context.Background())
			r, err := j.Get(cmd.Context(), id)
			if err != nil {
				return messageError("messages show", id, err)
			}
			evs, err := j.Events(cmd.Context(), id)
			if err != nil {
				return err
			}
			showMessage(cmd.OutOrStdout(), r, evs)
			return nil
		},
	}
}

// messageError says why message id could not be read by command cmd: removed
// by the journal's retention, never in the journal, or err itself.
func messageError(cmd string, id routes.ID, err error) error {
	switch {
	case errors.Is(err, routes.ErrRemoved):
		return fmt.Errorf("%s: message %s was removed from the journal by its retention (journal.retention): it was older than that and had nothing left to do", cmd, id)
	case errors.Is(err, routes.ErrNotFound):
		return fmt.Errorf("%s: no message %s in the journal", cmd, id)
	}
	return err
}

func showMessage(w io.Writer, r *routes.Record, journey []routes.Event) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"id", r.ID.String()},
		{"received", r.Received.Format(time.RFC3339Nano)},
		{"listener", r.Listener},
		{"peer", r.Peer},
		{"sender", r.Sender},
		{"control id", r.ControlID},
		{"type", strings.Trim(r.Type+"^"+r.Trigger, "^")},
		{"version", r.Version},
		{"nhs number", r.NHSNumber},
		{"status", string(r.Status)},
		{"ack code", r.AckCode},
		{"size", fmt.Sprintf("%d bytes", len(r.Raw))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	tw.Flush()
	showJourney(w, r.Status, journey)
	fmt.Fprintln(w, "\nmessage:")
	writeSegments(w, r.Raw)
	// Processing that fails replaces the ACK journaled with the message.
	ack, replaced := routes.AckSent(r, journey)
	if replaced {
		fmt.Fprintln(w, "\nack sent (processing replaced the one journaled with the message):")
		writeSegments(w, ack)
		return
	}
	if len(r.Ack) > 0 {
		if strings.HasPrefix(r.Peer, "amqp://") {
			// A queue has no one to send an ACK to: its code settled the
			// broker's delivery (AA or CA acknowledged, AR rejected).
			fmt.Fprintln(w, "\nack (not sent; it settled the queue's delivery):")
		} else {
			fmt.Fprintln(w, "\nack sent:")
		}
		writeSegments(w, r.Ack)
	}
}

// writeSegments prints an HL7 message one segment per line, whatever its
// terminators.
func writeSegments(w io.Writer, b []byte) {
	for _, seg := range bytes.FieldsFunc(b, func(r rune) bool { return r == '\r' || r == '\n' }) {
		fmt.Fprintf(w, "  %s\n", seg)
	}
}
