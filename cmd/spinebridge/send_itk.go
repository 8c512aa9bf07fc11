package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/itk"
)

// sendITK posts each file to the ITK endpoint at url and prints one line per
// file: its name and "OK" (or the receiver's SimpleMessageResponse text), or
// "FAULT", the toolkit error code, the SOAP fault code and the diagnostic. A
// file holding a SOAP envelope is posted as it is, so broken requests can be
// sent on purpose; a file holding a bare Distribution Envelope is wrapped in a
// SOAP request with fresh WS-Addressing and WS-Security headers. It reads the
// send command's TLS flags (--tls, --ca, --cert, --key, --server-name) and
// --timeout when the command has them, and returns exitError{1} when any file
// was refused or could not be sent.
func sendITK(cmd *cobra.Command, url string, files []string) error {
	if url == "" {
		return usageError{errors.New("send: --itk URL is required")}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if t, err := cmd.Flags().GetDuration("timeout"); err == nil && t > 0 {
		client.Timeout = t
	}
	flag := func(name string) string {
		v, _ := cmd.Flags().GetString(name)
		return v
	}
	useTLS, _ := cmd.Flags().GetBool("tls")
	if ca, cert, key := flag("ca"), flag("cert"), flag("key"); useTLS || ca != "" || cert != "" {
		tc, err := clientTLS(ca, cert, key, flag("server-name"))
		if err != nil {
			return usageError{err}
		}
		client.Transport = &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}
	}
	defer client.CloseIdleConnections()
	out, failed := cmd.OutOrStdout(), false
	for _, name := range files {
		line, err := postITK(cmd, client, url, name)
		if err != nil {
			failed = true
			fmt.Fprintf(cmd.ErrOrStderr(), "spinebridge: send: %s: %v\n", name, err)
			line = "ERROR"
		}
		if strings.HasPrefix(line, "FAULT ") {
			failed = true
		}
		fmt.Fprintf(out, "%s %s\n", name, line)
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// postITK sends one file and returns the line to print for it.
func postITK(cmd *cobra.Command, client *http.Client, url, name string) (string, error) {
	doc, err := readInput(cmd.InOrStdin(), name)
	if err != nil {
		return "", err
	}
	body, err := itk.RequestFor(doc, itk.SOAPOptions{To: url})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	r, err := itk.ParseResponse(answer, itk.Limits{})
	if err != nil {
		return "", fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if f := r.Fault; f != nil {
		return fmt.Sprintf("FAULT %d %s %s", f.Code, f.FaultCode, f.Diagnostic), nil
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("HTTP %d without a SOAP fault", resp.StatusCode)
	}
	return r.Text, nil
}
