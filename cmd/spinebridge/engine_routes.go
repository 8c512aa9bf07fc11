package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spinebridge/spinebridge/adapters/amqp"
	"github.com/spinebridge/spinebridge/adapters/fhirrest"
	"github.com/spinebridge/spinebridge/adapters/file"
	"github.com/spinebridge/spinebridge/adapters/itk"
	"github.com/spinebridge/spinebridge/adapters/mllp"
	"github.com/spinebridge/spinebridge/routes"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// destinationKinds are the destination kinds a routes file may declare.
func destinationKinds() map[string]routes.DestinationFactory {
	return map[string]routes.DestinationFactory{
		"fhir":    fhirrest.Factory,
		"amqp":    amqp.Factory,
		"file":    file.Factory,
		"mllp":    mllp.DestinationFactory,
		"itk-ack": itk.AckFactory,
	}
}

// transformersFor builds the transforms a route may name: the mapping set's
// (fhir, and one per structure), cda for ITK CDA documents, and
// itk-infrastructure-ack and itk-business-ack for the acknowledgements ITK
// senders ask for. The mapping set is returned too, for serve to reload.
func transformersFor(cfg config, log *slog.Logger) (map[string]routes.Transformer, *routes.Mappings, error) {
	opts, err := mappingOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	m, err := routes.NewMappings(cfg.FHIR.Mappings, opts, log)
	if err != nil {
		return nil, nil, fmt.Errorf("mappings:\n%w", err)
	}
	ts := m.Transformers()
	ts["cda"] = &itk.CDATransformer{Zone: opts.Zone}
	ts["itk-infrastructure-ack"] = itk.InfrastructureAckTransformer{Identity: cfg.ITK.Identity}
	ts["itk-business-ack"] = itk.BusinessAckTransformer{Identity: cfg.ITK.Identity}
	return ts, m, nil
}

// tableOptions are what routes files are loaded with, by serve and by
// `routes lint` and `routes test` alike, with the mapping set behind them.
func tableOptions(cfg config, log *slog.Logger) (routes.TableOptions, *routes.Mappings, error) {
	ts, m, err := transformersFor(cfg, log)
	if err != nil {
		return routes.TableOptions{}, nil, err
	}
	return routes.TableOptions{Kinds: destinationKinds(), Transformers: ts}, m, nil
}

// routing is the engine's routing and delivery: the routes file, reloaded on
// change, and the dispatcher that follows it.
type routing struct {
	reloader   *routes.Reloader
	mappings   *routes.Mappings
	dispatcher *routes.Dispatcher
	store      *routes.Local
	metrics    *routes.Metrics
	registry   *prometheus.Registry
	log        *slog.Logger
}

// buildRouting loads the routes and builds the dispatcher over j.
func buildRouting(cfg config, j *routes.Local, log *slog.Logger) (*routing, error) {
	opts, mappings, err := tableOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	paths, err := routesPaths(cfg)
	if err != nil {
		return nil, err
	}
	reloader, err := routes.NewReloader(paths, opts, log)
	if err != nil {
		return nil, fmt.Errorf("routes:\n%w", err)
	}
	metrics := routes.NewMetrics()
	d, err := routes.NewDispatcher(routes.DispatcherConfig{
		Store:        j,
		Routing:      reloader.Current().Routing(),
		Transformers: opts.Transformers,
		Validate:     validateFHIR,
		Concurrency:  cfg.Delivery.Concurrency,
		Retry: routes.RetryPolicy{
			Initial:  cfg.Delivery.InitialBackoff,
			Max:      cfg.Delivery.MaxBackoff,
			Attempts: cfg.Delivery.MaxAttempts,
		},
		MaxPending: cfg.Delivery.MaxPending,
		AckPoint:   routes.AckPoint(cfg.Ack.Point),
		Metrics:    metrics,
		Log:        log,
	})
	if err != nil {
		reloader.Current().Close()
		return nil, err
	}
	reloader.OnSwap = func(_, next *routes.Table) { d.SetRouting(next.Routing()) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(metrics.Collectors()...)
	reg.MustRegister(reloader.Collectors()...)
	reg.MustRegister(mappings.Collectors()...)
	reg.MustRegister(j.Collectors()...)
	return &routing{reloader: reloader, mappings: mappings, dispatcher: d, store: j, metrics: metrics, registry: reg, log: log}, nil
}

// routesPaths is where the routes come from: the configured file or
// directory, or else the embedded default table, written afresh at each start
// to default-routes.yaml in the data directory so that it can be read, copied,
// and named by its errors' positions.
func routesPaths(cfg config) ([]string, error) {
	if cfg.Routes.File != "" {
		return []string{cfg.Routes.File}, nil
	}
	path := filepath.Join(cfg.DataDir, "default-routes.yaml")
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, routes.DefaultTable, 0o640); err != nil {
		return nil, fmt.Errorf("write the default routes: %w", err)
	}
	return []string{path}, nil
}

// handle mounts the routing's admin API on mux.
func (rt *routing) handle(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(rt.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /messages/{id}/replay", rt.replay)
	mux.HandleFunc("GET /dead-letters", rt.deadLetters)
	mux.HandleFunc("POST /dead-letters/replay", rt.reviveDeadLetters)
	mux.HandleFunc("POST /dead-letters/discard", rt.discardDeadLetters)
	mux.HandleFunc("POST /routes/reload", rt.reload)
	mux.HandleFunc("POST /mappings/reload", rt.reloadMappings)
}

func (rt *routing) replay(w http.ResponseWriter, r *http.Request) {
	id, err := routes.ParseID(r.PathValue("id"))
	if err != nil {
		http.Error(w, "not a journal id", http.StatusBadRequest)
		return
	}
	if err := rt.dispatcher.Replay(r.Context(), id); err != nil {
		if !errors.Is(err, routes.ErrNotFound) {
			rt.log.Error("admin: replay", "id", id, "err", err)
		}
		writeJournalError(w, err)
		return
	}
	fmt.Fprintf(w, "%s: replaying\n", id)
}

func (rt *routing) deadLetters(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err := rt.store.DeadLetters(r.Context(), r.URL.Query().Get("destination"), func(dl routes.DeadLetter) bool {
		return enc.Encode(deadLetterToJSON(dl)) == nil
	})
	if err != nil {
		rt.log.Error("admin: dead letters", "err", err)
	}
}

func (rt *routing) reviveDeadLetters(w http.ResponseWriter, r *http.Request) {
	n, err := rt.dispatcher.ReviveDeadLetters(r.Context(), r.URL.Query().Get("destination"))
	if errors.Is(err, routes.ErrNotConfigured) {
		// Those of destinations the table does not declare stay dead letters;
		// the others were sent again.
		rt.log.Warn("admin: dead letters of destinations not configured stay", "sent", n, "err", err)
		http.Error(w, fmt.Sprintf("%d dead letters sent again\n%v", n, err), http.StatusConflict)
		return
	}
	if err != nil {
		rt.log.Error("admin: replay dead letters", "err", err)
		http.Error(w, "journal error", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%d dead letters sent again\n", n)
}

func (rt *routing) discardDeadLetters(w http.ResponseWriter, r *http.Request) {
	destination := r.URL.Query().Get("destination")
	n, err := rt.store.DiscardDeadLetters(r.Context(), destination)
	if err != nil {
		rt.log.Error("admin: discard dead letters", "err", err)
		http.Error(w, "journal error", http.StatusInternalServerError)
		return
	}
	rt.log.Info("admin: dead letters discarded; their messages now go with the journal's retention", "count", n, "destination", destination)
	fmt.Fprintf(w, discardedText, n)
}

func (rt *routing) reload(w http.ResponseWriter, _ *http.Request) {
	if err := rt.reloader.Reload(); err != nil {
		http.Error(w, "routes not reloaded; the running table stays:\n"+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	fmt.Fprintln(w, "routes reloaded")
}

func (rt *routing) reloadMappings(w http.ResponseWriter, _ *http.Request) {
	if err := rt.mappings.Reload(); err != nil {
		http.Error(w, "mappings not reloaded; the set in force stays:\n"+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	fmt.Fprintln(w, "mappings reloaded")
}

// ready checks every destination of the current table, in parallel, within
// the request's deadline; it returns the problems found.
func (rt *routing) ready(ctx context.Context) []string {
	t := rt.reloader.Current()
	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
	)
	for name, d := range t.Destinations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Ready(ctx); err != nil {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("destination %s: %v", name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return problems
}

// validateFHIR is a route's run-time validation: google/fhir/go's R4 parsing
// and validation of the transformed Bundle, with the checks fhirmodel adds.
func validateFHIR(body []byte) error {
	return fhirmodel.Validate(body)
}
