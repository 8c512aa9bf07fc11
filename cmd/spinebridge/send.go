package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/adapters/mllp"
)

func newSendCommand() *cobra.Command {
	var (
		addr                   string
		useTLS, commitAck      bool
		caFile, certFile, key  string
		serverName             string
		dialTimeout, ackTimout time.Duration
		retries                int
		itkURL                 string
		appAckWait             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send (--addr HOST:PORT | --itk URL) FILE...",
		Short: "Send HL7 v2 messages over MLLP, or ITK envelopes over SOAP, and print each answer",
		Long: `Send sends every message in each FILE (a file may hold several messages or a
batch; - reads standard input) over one MLLP connection, waits for each
acknowledgement and prints one line per message: its MSH-10 and the ACK code.

It exits 0 when every message got AA or CA, and 1 when any got AE, AR, CE or CR,
timed out, or could not be sent.

A receiver may send application acknowledgements (MSH-16, enhanced mode) once
it has processed a message; each is printed as "MSH-10 CODE application" when
it arrives. --app-acks D waits up to D after the last message for those still
due (messages whose MSH-16 is AL, or empty with MSH-15 set); an application
AE or AR also makes the exit status 1.

With --itk URL each FILE is an ITK 2.x request (a SOAP envelope, or a bare
Distribution Envelope, which is wrapped in fresh SOAP headers) POSTed to URL;
one line per file says OK or FAULT with the ITK error code and diagnostic.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if itkURL != "" {
				if addr != "" {
					return usageError{errors.New("send: --addr and --itk are alternatives")}
				}
				return sendITK(cmd, itkURL, args)
			}
			if addr == "" {
				return usageError{errors.New("send: --addr HOST:PORT (MLLP) or --itk URL (ITK) is required")}
			}
			scfg := mllp.SenderConfig{
				Addr:        addr,
				DialTimeout: dialTimeout,
				AckTimeout:  ackTimout,
				CommitACK:   commitAck,
				Retries:     retries,
				Backoff:     200 * time.Millisecond,
			}
			if useTLS || caFile != "" || certFile != "" {
				tc, err := clientTLS(caFile, certFile, key, serverName)
				if err != nil {
					return usageError{err}
				}
				scfg.TLS = tc
			}
			var msgs [][]byte
			for _, name := range args {
				data, err := readInput(cmd.InOrStdin(), name)
				if err != nil {
					return err
				}
				split, err := hl7v2.SplitMessages(data)
				if err != nil && len(split) == 0 {
					return fmt.Errorf("send: %s: %w", name, err)
				}
				msgs = append(msgs, split...)
			}
			out, failed := cmd.OutOrStdout(), false
			appAcks := 0
			scfg.OnLateAck = func(controlID string, ack []byte) {
				appAcks++
				code := ackCode(ack)
				if code != "AA" && code != "CA" {
					failed = true
				}
				fmt.Fprintf(out, "%s %s application\n", controlID, code)
			}
			s, err := mllp.Dial(cmd.Context(), scfg)
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			defer s.Close()
			var m hl7v2.Message
			due := 0
			for _, msg := range msgs {
				controlID := "-"
				if err := m.Parse(msg); err == nil || m.SegmentCount() > 0 {
					if v, _ := m.Lookup("MSH-10"); !v.IsEmpty() {
						controlID = v.String()
					}
					if appAckDue(&m) {
						due++
					}
				}
				ack, err := s.Send(cmd.Context(), msg)
				code := ackCode(ack)
				var ae *mllp.AckError
				switch {
				case err == nil:
				case errors.As(err, &ae):
					failed = true
				default:
					failed = true
					fmt.Fprintf(cmd.ErrOrStderr(), "spinebridge: send: %s: %v\n", controlID, err)
					if code == "" {
						code = "ERROR"
					}
				}
				fmt.Fprintf(out, "%s %s\n", controlID, code)
			}
			if appAckWait > 0 && appAcks < due {
				if err := s.AwaitLate(cmd.Context(), appAckWait, func() bool { return appAcks >= due }); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "spinebridge: send: %v\n", err)
					failed = true
				}
				if appAcks < due {
					fmt.Fprintf(cmd.ErrOrStderr(), "spinebridge: send: %d of %d application acknowledgements came within %v\n", appAcks, due, appAckWait)
					failed = true
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "", "MLLP address of the receiver, HOST:PORT")
	f.StringVar(&itkURL, "itk", "", "ITK endpoint URL to POST SOAP envelopes to, e.g. http://127.0.0.1:8080/itk")
	f.BoolVar(&useTLS, "tls", false, "use TLS (implied by --ca or --cert)")
	f.StringVar(&caFile, "ca", "", "PEM file of the CA that signed the receiver's certificate (default: system roots)")
	f.StringVar(&certFile, "cert", "", "PEM client certificate, for mutual TLS")
	f.StringVar(&key, "key", "", "PEM key of --cert")
	f.StringVar(&serverName, "server-name", "", "name to verify the receiver's certificate against (default: the host of --addr)")
	f.DurationVar(&dialTimeout, "dial-timeout", 10*time.Second, "time allowed to connect")
	f.DurationVar(&ackTimout, "timeout", 30*time.Second, "time allowed for each acknowledgement")
	f.BoolVar(&commitAck, "commit-ack", false, "expect MLLP release 2 commit acknowledgements (0x06/0x15)")
	f.IntVar(&retries, "retries", 0, "times to resend a message answered AE/CE, NAKed or timed out")
	f.DurationVar(&appAckWait, "app-acks", 0, "after the last message, wait up to this long for the application acknowledgements (MSH-16 AL) still due")
	return cmd
}

// appAckDue reports whether m asks for an application acknowledgement
// whatever its outcome: MSH-16 AL, or empty in enhanced mode (MSH-15 set).
func appAckDue(m *hl7v2.Message) bool {
	msh15, _ := m.Lookup("MSH-15")
	msh16, _ := m.Lookup("MSH-16")
	return msh16.String() == "AL" || msh16.IsEmpty() && !msh15.IsEmpty()
}

// ackCode returns MSA-1 of an ACK, or "" when it has none.
func ackCode(ack []byte) string {
	if len(ack) == 0 {
		return ""
	}
	m, err := hl7v2.Parse(ack)
	if err != nil && m.SegmentCount() == 0 {
		return ""
	}
	v, _ := m.Lookup("MSA-1")
	return v.String()
}

// clientTLS builds a client TLS configuration from PEM files.
func clientTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("send: --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("send: --ca %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("send: --cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
