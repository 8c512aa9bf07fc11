package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/routes"
)

// showJourney prints where a message went: routing, then each delivery
// attempt with its outcome.
func showJourney(w io.Writer, status routes.Status, evs []routes.Event) {
	fmt.Fprintln(w, "\njourney:")
	if len(evs) == 0 {
		switch status {
		case routes.StatusAccepted, routes.StatusReceived:
			fmt.Fprintln(w, "  not routed yet")
		default:
			// Only accepted messages are routed; the ACK says why this one was not.
			fmt.Fprintf(w, "  none: only accepted messages are routed, and this one is %s\n", status)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ev := range evs {
		var what string
		switch ev.Kind {
		case routes.EventRouted:
			what = fmt.Sprintf("routed by %s to %s", ev.Route, ev.Detail)
		case routes.EventUnrouted:
			what = "no route matched"
		case routes.EventRouteError:
			what = "routing failed: " + ev.Detail
		case routes.EventAttempt:
			what = fmt.Sprintf("%s via %s: attempt %d %s (%s)", ev.Destination, ev.Route, ev.Attempt, ev.Outcome, ev.Duration.Round(time.Microsecond))
			if ev.Detail != "" {
				what += ": " + ev.Detail
			}
		case routes.EventReplay:
			what = "replay asked for"
		case routes.EventRevived:
			what = fmt.Sprintf("dead letter to %s via %s sent again", ev.Destination, ev.Route)
		case routes.EventDiscarded:
			what = fmt.Sprintf("dead letter to %s via %s discarded", ev.Destination, ev.Route)
		case routes.EventAppAck:
			what = "application ACK " + ev.Detail
		case routes.EventAck:
			what = "ACK changed by processing: " + msaOf(ev.Detail)
		case routes.EventWarning:
			what = fmt.Sprintf("warning from the transform of %s, delivered with: %s", ev.Route, ev.Detail)
		default:
			what = string(ev.Kind)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", ev.At.Format(time.RFC3339Nano), what)
	}
	tw.Flush()
}

// msaOf returns the MSA segment of an ACK, or the ACK when it has none.
func msaOf(ack string) string {
	for seg := range strings.FieldsFuncSeq(ack, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if strings.HasPrefix(seg, "MSA") {
			return seg
		}
	}
	return ack
}

// openJournalForWrite opens the configured journal for writing when no engine
// holds it; while one does, admin is that engine's base URL and j is nil.
func openJournalForWrite(cmd *cobra.Command) (j *routes.Local, admin string, err error) {
	ro, admin, err := openJournal(cmd)
	if err != nil || ro == nil {
		return nil, admin, err
	}
	ro.Close(context.Background())
	cfg, err := loadConfig(cmd, map[string]string{"data_dir": "data-dir", "admin.addr": "admin-addr"})
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(cfg.DataDir, "journal")
	if j, err = routes.OpenLocal(dir, routes.LocalOptions{}); err != nil {
		return nil, "", fmt.Errorf("open journal in %s: %w", dir, err)
	}
	return j, "", nil
}

// adminPost posts to a running engine's admin API and returns its answer.
func adminPost(ctx context.Context, base, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("the journal is held by a running engine, and its admin API did not answer: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
		return string(msg), nil
	case http.StatusNotFound:
		return "", routes.ErrNotFound
	case http.StatusGone:
		return "", routes.ErrRemoved
	}
	return "", fmt.Errorf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
}

func newMessagesReplayCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "replay ID...",
		Short: "Route and deliver messages again, with the routing table as it stands",
		Long: `Replay routes each message again through the current routing table and delivers
it to every destination its routes name, under the same delivery ids as before
(so FHIR conditional updates and AMQP message ids let the destination tell).
While an engine runs it replays at once; otherwise the replay is stored and
done when the engine next starts.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]routes.ID, len(args))
			for i, a := range args {
				id, err := routes.ParseID(a)
				if err != nil {
					return usageError{fmt.Errorf("messages replay: %q is not a journal id", a)}
				}
				ids[i] = id
			}
			j, admin, err := openJournalForWrite(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if j == nil {
				for _, id := range ids {
					if _, err := adminPost(cmd.Context(), admin, "/messages/"+id.String()+"/replay"); err != nil {
						return messageError("messages replay", id, err)
					}
					fmt.Fprintf(out, "%s: replaying\n", id)
				}
				return nil
			}
			defer j.Close(context.Background())
			for _, id := range ids {
				if err := j.RequestReplay(cmd.Context(), id); err != nil {
					return messageError("messages replay", id, err)
				}
				fmt.Fprintf(out, "%s: replay stored; the engine does it when it next starts\n", id)
			}
			return nil
		},
	}
}

// deadLetterJSON is a dead letter as the admin API and --format json print it.
type deadLetterJSON struct {
	ID          string    `json:"id"`
	Route       string    `json:"route"`
	Destination string    `json:"destination"`
	Attempts    int       `json:"attempts"`
	At          time.Time `json:"at"`
	Reason      string    `json:"reason"`
}

func deadLetterToJSON(dl routes.DeadLetter) deadLetterJSON {
	return deadLetterJSON{ID: dl.MessageID.String(), Route: dl.Route, Destination: dl.Destination,
		Attempts: dl.Attempts, At: dl.At, Reason: dl.Reason}
}

func newMessagesDeadLettersCommand() *cobra.Command {
	var (
		destination string
		replay      bool
		discard     bool
		format      string
	)
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "List the deliveries given up on; send them again with --replay, or give up on them with --discard",
		Long: `Dead-letters lists every delivery the engine gave up on: refused for good by its
destination (a 4xx with an OperationOutcome, AR/CR, invalid output) or failing
past the retry limit, with the reason. After the fault is fixed, --replay sends
them again (all of them, or those of --destination), from the first attempt.

A dead letter keeps its message in the journal past journal.retention: it is
work nobody has finished. --discard gives up on them for good (all of them, or
those of --destination), noting it in each message's journey; the messages then
go with the journal's retention.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("messages dead-letters: --format %q: want table or json", format)}
			}
			if replay && discard {
				return usageError{fmt.Errorf("messages dead-letters: --replay and --discard together: choose one")}
			}
			var (
				j     *routes.Local
				admin string
				err   error
			)
			if replay || discard {
				j, admin, err = openJournalForWrite(cmd)
			} else {
				j, admin, err = openJournal(cmd)
			}
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			q := "?" + url.Values{"destination": {destination}}.Encode()
			if j == nil {
				if replay || discard {
					path := "/dead-letters/replay"
					if discard {
						path = "/dead-letters/discard"
					}
					msg, err := adminPost(ctx, admin, path+q)
					if err != nil {
						return err
					}
					fmt.Fprint(out, msg)
					return nil
				}
				body, err := adminGet(ctx, admin, "/dead-letters"+q)
				if err != nil {
					return err
				}
				defer body.Close()
				dec := json.NewDecoder(body)
				var letters []deadLetterJSON
				for {
					var dl deadLetterJSON
					if err := dec.Decode(&dl); err == io.EOF {
						break
					} else if err != nil {
						return fmt.Errorf("admin API: %w", err)
					}
					letters = append(letters, dl)
				}
				return writeDeadLetters(out, letters, format)
			}
			defer j.Close(context.Background())
			if discard {
				n, err := j.DiscardDeadLetters(ctx, destination)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, discardedText, n)
				return nil
			}
			var letters []routes.DeadLetter
			if err := j.DeadLetters(ctx, destination, func(dl routes.DeadLetter) bool {
				letters = append(letters, dl)
				return true
			}); err != nil {
				return err
			}
			if replay {
				if _, err := j.Revive(ctx, letters, routes.Event{Kind: routes.EventRevived}); err != nil {
					return err
				}
				fmt.Fprintf(out, "%d dead letters pending again; the engine delivers them when it next starts\n", len(letters))
				return nil
			}
			out2 := make([]deadLetterJSON, len(letters))
			for i, dl := range letters {
				out2[i] = deadLetterToJSON(dl)
			}
			return writeDeadLetters(out, out2, format)
		},
	}
	cmd.Flags().StringVar(&destination, "destination", "", "only the dead letters of this destination")
	cmd.Flags().BoolVar(&replay, "replay", false, "send the dead letters again")
	cmd.Flags().BoolVar(&discard, "discard", false, "give up on the dead letters for good; their messages then go with journal.retention")
	cmd.Flags().StringVar(&format, "format", "table", "table or json (one object per line)")
	return cmd
}

// discardedText is the answer to a discard, with the number of dead letters.
const discardedText = "%d dead letters discarded; their messages now go with journal.retention\n"

func writeDeadLetters(w io.Writer, letters []deadLetterJSON, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, dl := range letters {
			if err := enc.Encode(dl); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROUTE\tDESTINATION\tATTEMPTS\tAT\tREASON")
	for _, dl := range letters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", dl.ID, dl.Route, dl.Destination, dl.Attempts, dl.At.Format(time.RFC3339), dl.Reason)
	}
	return tw.Flush()
}
