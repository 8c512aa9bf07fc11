package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/itk"
	"github.com/spinebridge/spinebridge/routes"
)

// fakeITKJournal takes everything.
type fakeITKJournal struct{ n int }

func (j *fakeITKJournal) ReceiveV2(ctx context.Context, a routes.Arrival) (routes.Reply, func()) {
	j.n++
	return routes.Reply{Code: "AA", Committed: true, ID: routes.ID(j.n)}, func() {}
}

func (j *fakeITKJournal) Append(ctx context.Context, rec *routes.Record) error {
	j.n++
	rec.ID = routes.ID(j.n)
	return nil
}

func TestSendITK(t *testing.T) {
	// The fixtures' timestamps are fixed; a window of years admits them and
	// the fresh ones a bare envelope is wrapped with.
	h, err := itk.NewHandler(itk.Config{TimestampWindow: 10 * 365 * 24 * time.Hour}, &fakeITKJournal{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	dir := t.TempDir()
	cda, err := os.ReadFile("../../fixtures/itk/cda_discharge.xml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(cda)
	de := s[strings.Index(s, "<itk:DistributionEnvelope>"):strings.Index(s, "</soap:Body>")]
	de = strings.Replace(de, "<itk:DistributionEnvelope>", `<itk:DistributionEnvelope xmlns:itk="urn:nhs-itk:ns:201005" xmlns:npfitlc="NPFIT:HL7:Localisation">`, 1)
	bare := filepath.Join(dir, "bare-envelope.xml")
	os.WriteFile(bare, []byte(de), 0o644)
	soap := "../../fixtures/itk/cda_discharge.xml"
	bad := "../../fixtures/itk/invalid/1000-de-payload-manifest.xml"

	run := func(files ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		cmd := &cobra.Command{}
		cmd.Flags().Duration("timeout", 10*time.Second, "")
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetContext(context.Background())
		err := sendITK(cmd, srv.URL+"/itk", files)
		return out.String(), errOut.String(), err
	}
	out, _, err := run(soap, bare)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if out != soap+" OK\n"+bare+" OK\n" {
		t.Errorf("output:\n%s", out)
	}
	out, _, err = run(soap, bad)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("err %v, want exit status 1", err)
	}
	if !strings.Contains(out, bad+" FAULT 1000 Client DE0012 de-payload-manifest at ") {
		t.Errorf("output:\n%s", out)
	}
	_, errOut, err := run(filepath.Join(dir, "missing.xml"))
	if !errors.As(err, &ee) || !strings.Contains(errOut, "missing.xml") {
		t.Errorf("a missing file: err %v, stderr %q", err, errOut)
	}
	var ue usageError
	if err := sendITK(&cobra.Command{}, "", []string{soap}); !errors.As(err, &ue) {
		t.Errorf("no URL: %v, want a usage error", err)
	}
}
