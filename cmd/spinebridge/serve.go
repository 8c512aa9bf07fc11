package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7http"
	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/adapters/itk"
	"github.com/spinebridge/spinebridge/adapters/mllp"
	"github.com/spinebridge/spinebridge/routes"
)

// shutdownGrace bounds a graceful shutdown: in-flight messages finish and get their
// ACKs, then the journal closes.
const shutdownGrace = 15 * time.Second

func newServeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the engine: accept, journal and acknowledge messages, route, transform and deliver them",
		Long: `Serve runs the engine. With no flags it starts on its embedded defaults: MLLP on
:2575, HL7 v2 over HTTP on :8080 (POST /hl7v2), the admin endpoint on :8081
(/healthz, /readyz, /messages), and the journal in ./data. It also consumes
raw HL7 v2 from each RabbitMQ queue listed under inbound.amqp.

A message is acknowledged only once it is durable in the journal. Configuration
comes from --config FILE (YAML), SPINEBRIDGE_<KEY> environment variables (e.g.
SPINEBRIDGE_MLLP_ADDR, SPINEBRIDGE_ACK_DUPLICATE_WINDOW) and the flags below.
The routes (--routes) and the mapping files over the embedded set (--mappings)
are loaded again when their files change, on SIGHUP, and on POST /routes/reload
and /mappings/reload; an edit that does not load is logged and the old ones
stay. SIGINT or SIGTERM stops accepting, lets in-flight messages finish and
closes the journal.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, map[string]string{
				"mllp.addr":     "mllp-addr",
				"http.addr":     "http-addr",
				"admin.addr":    "admin-addr",
				"data_dir":      "data-dir",
				"routes.file":   "routes",
				"itk.addr":      "itk-addr",
				"fhir.mappings": "mappings",
			})
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.Log)
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, log)
		},
	}
	cmd.Flags().String("mllp-addr", ":2575", "MLLP listen address (config mllp.addr)")
	cmd.Flags().String("http-addr", ":8080", "inbound HTTP address, HL7 v2 over HTTP at /hl7v2 (config http.addr)")
	cmd.Flags().String("admin-addr", ":8081", "admin HTTP address (config admin.addr)")
	cmd.Flags().String("data-dir", "./data", "directory of the journal (config data_dir)")
	cmd.Flags().String("itk-addr", "", "ITK 2.x SOAP address, path /itk; empty shares the HTTP listener, :8080 by default (config itk.addr)")
	cmd.Flags().String("routes", "", "routes file or directory; the embedded default table when empty (config routes.file)")
	cmd.Flags().String("mappings", "", "directory of mapping files over the embedded set, reloaded when they change (config fhir.mappings)")
	return cmd
}

func newLogger(w io.Writer, c logConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("config: log.level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("config: log.format %q: want text or json", c.Format)
}

// engine is what serve runs, built from a configuration before anything binds.
type engine struct {
	journal  *routes.Local
	routing  *routing
	itk      *http.Server // nil when ITK shares the inbound HTTP listener
	listener *mllp.Listener
	inbound  *http.Server // HL7 v2 over HTTP
	amqp     []*amqpInbound
	admin    *http.Server
	log      *slog.Logger
	// intakes are every listener's intake, for the application
	// acknowledgements an earlier run owed (routes.ResumeAppAcks).
	intakes []*routes.Intake
}

// buildEngine checks the configuration, reporting every problem at once, and
// builds the engine's parts. It opens the journal but binds no socket.
func buildEngine(cfg config, log *slog.Logger) (*engine, error) {
	icfg, lcfg, errs := engineConfig(cfg)
	queues, qerrs := newAMQPInbound(cfg.Inbound.AMQP, log)
	if err := errors.Join(errs, qerrs); err != nil {
		return nil, usageError{err}
	}
	dir := filepath.Join(cfg.DataDir, "journal")
	j, err := routes.OpenLocal(dir, routes.LocalOptions{DuplicateWindow: cfg.Ack.DuplicateWindow, Retention: cfg.Journal.Retention, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open journal in %s: %w", dir, err)
	}
	rt, err := buildRouting(cfg, j, log)
	if err != nil {
		j.Close(context.Background())
		return nil, err
	}
	fail := func(err error) (*engine, error) {
		rt.reloader.Current().Close()
		j.Close(context.Background())
		return nil, err
	}
	icfg.Processor = rt.dispatcher
	intake, err := routes.NewIntake(icfg, j, log)
	if err != nil {
		return fail(usageError{err})
	}
	icfg.Listener = "http"
	httpIntake, err := routes.NewIntake(icfg, j, log)
	if err != nil {
		return fail(usageError{err})
	}
	e := &engine{journal: j, routing: rt, amqp: queues, log: log, intakes: []*routes.Intake{intake, httpIntake}}
	for _, q := range queues {
		if err := q.connectIntake(icfg, j, rt.metrics, log); err != nil {
			return fail(usageError{err})
		}
		e.intakes = append(e.intakes, q.recv.intake)
	}
	l, err := mllp.NewListener(lcfg, mllpIntake{intake, rt.metrics}, log)
	if err != nil {
		return fail(usageError{err})
	}
	e.listener = l
	inbound := http.NewServeMux()
	inbound.Handle("/hl7v2", hl7http.NewHandler(hl7http.Config{ErrorStatus: cfg.HTTP.ErrorStatus, MaxBodySize: cfg.HTTP.MaxBodySize}, httpReceiver{httpIntake, rt.metrics}, log))
	e.inbound = &http.Server{Addr: cfg.HTTP.Addr, Handler: inbound, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.MLLP.ReadTimeout}
	icfg.Listener = itk.Listener
	itkIntake, err := routes.NewIntake(icfg, j, log)
	if err != nil {
		return fail(usageError{err})
	}
	e.intakes = append(e.intakes, itkIntake)
	itkHandler, err := itk.NewHandler(itk.Config{MaxBodySize: cfg.ITK.MaxBodySize, Timeout: cfg.ITK.Timeout,
		TimestampWindow: cfg.ITK.TimestampWindow, Services: cfg.ITK.Services}, itkJournal{itkIntake, j, rt.metrics}, log)
	if err != nil {
		return fail(usageError{fmt.Errorf("config: itk: %w", err)})
	}
	if cfg.ITK.Addr == "" || cfg.ITK.Addr == cfg.HTTP.Addr {
		inbound.Handle("/itk", itkHandler)
	} else {
		itkMux := http.NewServeMux()
		itkMux.Handle("/itk", itkHandler)
		e.itk = &http.Server{Addr: cfg.ITK.Addr, Handler: itkMux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.ITK.Timeout}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", e.ready)
	mux.HandleFunc("GET /messages", e.listMessages)
	mux.HandleFunc("GET /messages/{id}", e.showMessage)
	rt.handle(mux)
	if cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	e.admin = &http.Server{Addr: cfg.Admin.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return e, nil
}

// engineConfig turns the configuration into the components' typed configs,
// collecting every error.
func engineConfig(cfg config) (routes.IntakeConfig, mllp.ListenerConfig, error) {
	var errs []error
	zone, err := time.LoadLocation(cfg.HL7.Timezone)
	if err != nil {
		errs = append(errs, fmt.Errorf("config: hl7.timezone %q: unknown zone", cfg.HL7.Timezone))
	}
	icfg := routes.IntakeConfig{
		Listener:        "mllp",
		AckPoint:        routes.AckPoint(cfg.Ack.Point),
		DuplicateWindow: cfg.Ack.DuplicateWindow,
		Versions:        cfg.Ack.Versions,
		ProcessingIDs:   cfg.Ack.ProcessingIDs,
		MessageTypes:    cfg.Ack.MessageTypes,
		ParseErrorCode:  hl7v2.AckCode(cfg.Ack.ParseErrorCode),
		RejectText:      cfg.Ack.RejectText,
		Zone:            zone,
		AppAcks:         routes.AppAckMode(cfg.Ack.Application),
	}
	if err := icfg.Validate(); err != nil {
		errs = append(errs, prefixErrors("config: ack: ", err))
	}
	switch r := cfg.Journal.Retention; {
	case r < 0:
		errs = append(errs, fmt.Errorf("config: journal.retention %v: want a duration, or 0 to keep every message", r))
	case r > 0 && r < cfg.Ack.DuplicateWindow:
		errs = append(errs, fmt.Errorf("config: journal.retention %v is shorter than ack.duplicate_window %v: a message resent within the window could be taken for a new one; make journal.retention at least %v, or 0 to keep every message",
			r, cfg.Ack.DuplicateWindow, cfg.Ack.DuplicateWindow))
	}
	lcfg := mllp.ListenerConfig{
		Name: "mllp",
		Addr: cfg.MLLP.Addr,
		TLS: mllp.TLSConfig{
			CertFile:     cfg.MLLP.TLS.CertFile,
			KeyFile:      cfg.MLLP.TLS.KeyFile,
			ClientCAFile: cfg.MLLP.TLS.ClientCAFile,
		},
		Frame:          mllp.FrameOptions{MaxFrameSize: cfg.MLLP.MaxFrameSize, Strict: cfg.MLLP.Strict},
		MaxConnections: cfg.MLLP.MaxConnections,
		ReadTimeout:    cfg.MLLP.ReadTimeout,
		IdleTimeout:    cfg.MLLP.IdleTimeout,
		KeepAlive:      cfg.MLLP.KeepAlive,
		CommitACK:      cfg.MLLP.CommitAck,
		WriteTimeout:   cfg.MLLP.WriteTimeout,
	}
	switch cfg.MLLP.TLS.ClientAuth {
	case "off", "":
		lcfg.TLS.ClientAuth = mllp.ClientAuthOff
	case "optional":
		lcfg.TLS.ClientAuth = mllp.ClientAuthOptional
	case "required":
		lcfg.TLS.ClientAuth = mllp.ClientAuthRequired
	default:
		errs = append(errs, fmt.Errorf("config: mllp.tls.client_auth %q: want off, optional or required", cfg.MLLP.TLS.ClientAuth))
	}
	switch cfg.MLLP.IdleAction {
	case "close", "":
		lcfg.IdleAction = mllp.IdleClose
	case "reset":
		lcfg.IdleAction = mllp.IdleReset
	default:
		errs = append(errs, fmt.Errorf("config: mllp.idle_action %q: want close or reset", cfg.MLLP.IdleAction))
	}
	return icfg, lcfg, errors.Join(errs...)
}

// prefixErrors puts prefix before each error joined in err.
func prefixErrors(prefix string, err error) error {
	var errs []error
	for _, line := range strings.Split(err.Error(), "\n") {
		errs = append(errs, errors.New(prefix+line))
	}
	return errors.Join(errs...)
}

// serve runs the engine until ctx is done, then shuts it down gracefully.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	e, err := buildEngine(cfg, log)
	if err != nil {
		return err
	}
	if err := e.listener.Listen(); err != nil {
		e.journal.Close(context.Background())
		return fmt.Errorf("mllp: listen on %s: %w", cfg.MLLP.Addr, err)
	}
	inboundLn, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		e.listener.Shutdown(context.Background())
		e.journal.Close(context.Background())
		return fmt.Errorf("http: listen on %s: %w", cfg.HTTP.Addr, err)
	}
	var itkLn net.Listener
	if e.itk != nil {
		if itkLn, err = net.Listen("tcp", cfg.ITK.Addr); err != nil {
			inboundLn.Close()
			e.listener.Shutdown(context.Background())
			e.journal.Close(context.Background())
			return fmt.Errorf("itk: listen on %s: %w", cfg.ITK.Addr, err)
		}
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		if itkLn != nil {
			itkLn.Close()
		}
		inboundLn.Close()
		e.listener.Shutdown(context.Background())
		e.journal.Close(context.Background())
		return fmt.Errorf("admin: listen on %s: %w", cfg.Admin.Addr, err)
	}
	log.Info("spinebridge serving", "mllp", e.listener.Addr().String(), "admin", adminLn.Addr().String(),
		"http", inboundLn.Addr().String(), "journal", filepath.Join(cfg.DataDir, "journal"), "version", version)

	errc := make(chan error, 4)
	routingCtx, stopRouting := context.WithCancel(context.Background())
	defer stopRouting()
	routed := make(chan error, 1)
	go func() { routed <- e.routing.dispatcher.Run(routingCtx) }()
	go e.resumeAppAcks(routingCtx)
	if cfg.Routes.Watch && cfg.Routes.File != "" {
		go e.routing.reloader.Run(routingCtx)
	}
	if cfg.FHIR.Watch && cfg.FHIR.Mappings != "" {
		go func() {
			if err := e.routing.mappings.Run(routingCtx); err != nil {
				log.Error("mappings: not watching; SIGHUP and POST /mappings/reload still reload", "err", err)
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				// The mappings first: the routes name their transforms.
				// Errors are logged by each reload.
				if cfg.FHIR.Mappings != "" {
					if err := e.routing.mappings.Reload(); err == nil {
						log.Info("mappings reloaded on SIGHUP")
					}
				}
				if err := e.routing.reloader.Reload(); err == nil {
					log.Info("routes reloaded on SIGHUP")
				}
			case <-routingCtx.Done():
				return
			}
		}
	}()
	go func() { errc <- e.listener.Serve(ctx) }()
	serveHTTP := func(name string, s *http.Server, ln net.Listener) {
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	go serveHTTP("http", e.inbound, inboundLn)
	go serveHTTP("admin", e.admin, adminLn)
	itkAddr := inboundLn.Addr().String()
	if e.itk != nil {
		go serveHTTP("itk", e.itk, itkLn)
		itkAddr = itkLn.Addr().String()
	}
	log.Info("itk listening", "url", "http://"+itkAddr+"/itk")
	// The queues are consumed once routing runs, like the listeners, and stop
	// with them.
	amqpCtx, stopAMQP := context.WithCancel(ctx)
	defer stopAMQP()
	amqpStopped := runAMQPInbound(amqpCtx, e.amqp, log)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("spinebridge stopping: finishing in-flight messages")
	case runErr = <-errc:
		log.Error("spinebridge stopping after an error", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := e.listener.Shutdown(sctx); err != nil {
		log.Error("mllp: shutdown", "err", err)
	}
	// A consumer settles the messages in hand (journaled, then acknowledged)
	// before it stops; those the broker sent ahead go back to the queue.
	stopAMQP()
	if !amqpStopped(sctx) {
		log.Error("amqp inbound: not stopped in time; messages not yet acknowledged go back to their queues")
	}
	if err := e.inbound.Shutdown(sctx); err != nil {
		log.Error("http: shutdown", "err", err)
	}
	if e.itk != nil {
		if err := e.itk.Shutdown(sctx); err != nil {
			log.Error("itk: shutdown", "err", err)
		}
	}
	if err := e.admin.Shutdown(sctx); err != nil {
		log.Error("admin: shutdown", "err", err)
	}
	// Nothing new arrives now: let the attempts under way finish; what is not
	// delivered stays pending in the journal for the next start.
	stopRouting()
	if err := <-routed; err != nil {
		log.Error("routes: dispatcher", "err", err)
	}
	if err := e.routing.reloader.Current().Close(); err != nil {
		log.Error("routes: closing destinations", "err", err)
	}
	if err := e.journal.Close(sctx); err != nil {
		return fmt.Errorf("close journal: %w", err)
	}
	log.Info("spinebridge stopped")
	return runErr
}

// resumeAppAcks records the application acknowledgements the previous run
// owed when it stopped, as routing reaches their messages.
func (e *engine) resumeAppAcks(ctx context.Context) {
	last := e.journal.LastAtOpen()
	if last == 0 {
		return
	}
	n, err := routes.ResumeAppAcks(ctx, e.journal, last, e.intakes...)
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Error("application acknowledgements owed by the previous run: not all recorded", "recorded", n, "err", err)
	case n > 0:
		e.log.Info("application acknowledgements owed by the previous run recorded", "count", n)
	}
}

// ready answers /readyz: ready while the journal answers.
func (e *engine) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	err := e.journal.List(ctx, routes.Query{Limit: 1, Descending: true}, func(*routes.Record) bool { return false })
	if err != nil {
		http.Error(w, "journal not ready", http.StatusServiceUnavailable)
		return
	}
	problems := e.routing.ready(ctx)
	for _, q := range e.amqp {
		if err := q.consumer.Ready(); err != nil {
			problems = append(problems, fmt.Sprintf("inbound amqp %s: %v", q.name, err))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		http.Error(w, "not ready:\n"+strings.Join(problems, "\n"), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

// listMessages answers GET /messages with the journal's records, one JSON object
// per line, filtered as `messages list` filters: control_id, nhs_number, status,
// since and until (RFC 3339), limit (default 100; 0 for all).
func (e *engine) listMessages(w http.ResponseWriter, r *http.Request) {
	q, err := queryFromURL(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if err := listMessages(r.Context(), e.journal, q, "json", w); err != nil {
		e.log.Error("admin: list messages", "err", err)
	}
}

// writeJournalError answers a request about one message whose journal read
// failed: 410 for a message retention removed, 404 for one never journaled
// (ErrRemoved is also ErrNotFound, so it is asked first), 500 for the rest.
func writeJournalError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, routes.ErrRemoved):
		http.Error(w, "removed by the journal's retention", http.StatusGone)
	case errors.Is(err, routes.ErrNotFound):
		http.Error(w, "no such message", http.StatusNotFound)
	default:
		http.Error(w, "journal error", http.StatusInternalServerError)
	}
}

// showMessage answers GET /messages/{id} with the record as `messages show` prints it.
func (e *engine) showMessage(w http.ResponseWriter, r *http.Request) {
	id, err := routes.ParseID(r.PathValue("id"))
	if err != nil {
		http.Error(w, "not a journal id", http.StatusBadRequest)
		return
	}
	rec, err := e.journal.Get(r.Context(), id)
	if err != nil {
		writeJournalError(w, err)
		return
	}
	evs, err := e.journal.Events(r.Context(), id)
	if err != nil {
		http.Error(w, "journal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	showMessage(w, rec, evs)
}

// httpReceiver adapts the intake to HL7 v2 over HTTP.
type httpReceiver struct {
	intake  *routes.Intake
	metrics *routes.Metrics
}

var _ hl7http.Receiver = httpReceiver{}

func (h httpReceiver) ReceiveHTTP(ctx context.Context, payload []byte, peer string) ([]byte, string, func()) {
	r, release := h.intake.Receive(ctx, routes.Arrival{Payload: payload, Peer: peer})
	h.metrics.Received("http", string(r.Code))
	if r.Later != nil {
		r.Later(nil) // no connection to send an application ACK on: recorded
	}
	return r.Ack, string(r.Code), release
}

// itkJournal adapts the intake and the journal to the ITK listener: v2
// payloads go through the intake like MLLP messages, CDA documents straight to
// the journal.
type itkJournal struct {
	intake  *routes.Intake
	journal routes.Journal
	metrics *routes.Metrics
}

var _ itk.Journal = itkJournal{}

func (j itkJournal) ReceiveV2(ctx context.Context, a routes.Arrival) (routes.Reply, func()) {
	return receiveUnconnected(ctx, j.intake, j.metrics, itk.Listener, a)
}

// receiveUnconnected passes a to in for an inbound with no connection to send
// an application ACK on (ITK, a queue): one that is due is recorded in the
// message's journey instead.
func receiveUnconnected(ctx context.Context, in *routes.Intake, m *routes.Metrics, listener string, a routes.Arrival) (routes.Reply, func()) {
	r, release := in.Receive(ctx, a)
	m.Received(listener, string(r.Code))
	if r.Later != nil {
		r.Later(nil)
		r.Later = nil
	}
	return r, release
}

func (j itkJournal) Append(ctx context.Context, rec *routes.Record) error {
	err := j.journal.Append(ctx, rec)
	if err == nil {
		j.metrics.Received(itk.Listener, "OK")
	}
	return err
}

// mllpIntake adapts the intake to the MLLP listener.
type mllpIntake struct {
	intake  *routes.Intake
	metrics *routes.Metrics
}

var _ mllp.Handler = mllpIntake{}

func (h mllpIntake) HandleMLLP(ctx context.Context, in *mllp.Inbound) mllp.Response {
	r, release := h.intake.Receive(ctx, routes.Arrival{Payload: in.Payload, Peer: in.Conn.Remote, FrameErr: in.Err})
	h.metrics.Received("mllp", string(r.Code))
	return mllp.Response{
		Reply:     r.Ack,
		Committed: r.Committed,
		Close:     errors.Is(in.Err, mllp.ErrFrameTooLarge),
		Release:   release, // the ACK lives in the intake's scratch until written
		Later:     r.Later,
	}
}
