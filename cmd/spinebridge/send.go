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
	)
	cmd := &cobra.Command{
		Use:   "send (--addr HOST:PORT | --itk URL) FILE...",
		Short: "Send HL7 v2 messages over MLLP, or ITK envelopes over SOAP, and print each answer",
		Long: `Send sends every message in each FILE (a file may hold several messages or a
batch; - reads standard input) over one MLLP connection, waits for each
acknowledgement and prints one line per message: its MSH-10 and the ACK code.

It exits 0 when every message got AA or CA, and 1 when any got AE, AR, CE or CR,
timed out, or could not be sent.

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
			s, err := mllp.Dial(cmd.Context(), scfg)
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			defer s.Close()
			out, failed := cmd.OutOrStdout(), false
			var m hl7v2.Message
			for _, msg := range msgs {
				controlID := "-"
				if err := m.Parse(msg); err == nil || m.SegmentCount() > 0 {
					if v, _ := m.Lookup("MSH-10"); !v.IsEmpty() {
						controlID = v.String()
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
	return cmd
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
