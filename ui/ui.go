// Package ui serves the sidecar's web pages (SPEC §17): the experiments,
// one experiment's analysis and live charts, and the comparison of
// experiments. The pages are plain HTML, CSS and JavaScript modules embedded
// in the binary; they read the JSON API in the browser, so the numbers they
// show are the API's. Nothing is loaded from the network, and every URL a
// page uses is relative to the route prefix, which the server writes into
// each page's <base>.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

//go:embed assets templates
var files embed.FS

// Assets are the files served under /assets/: for tests that read them.
func Assets() fs.FS {
	sub, _ := fs.Sub(files, "assets")
	return sub
}

// Files are every embedded file, the assets and the page templates: for
// tests that check them all.
func Files() fs.FS { return files }

// Points reads what the analysis needs of an experiment's stored events;
// experiment.Manager has it.
type Points interface {
	Points(ctx context.Context, id string, f experiment.Filter) ([]analysis.Point, error)
}

// Options configure the pages.
type Options struct {
	// Prefix is the route prefix, "" or "/name" without a trailing slash,
	// as the API's router normalised it. The handler takes requests with
	// the prefix in their path.
	Prefix string
	// Links are the sidecar's other endpoints (paths without the
	// prefix), listed at the bottom of every page as the landing page of
	// an exporter lists them; ExtraHTML follows them.
	Links     []Link
	ExtraHTML template.HTML
	// AdminAPI tells whether DELETE is enabled: the delete button is
	// shown only then.
	AdminAPI bool
	// Version is shown at the bottom of every page.
	Version string
	// Store gives the latency distribution.
	Store  Points
	Logger *slog.Logger
}

// Link is one endpoint of the sidecar.
type Link struct {
	Address, Text string
}

// page is a server-rendered page: a layout around one page's template.
type page struct {
	name, title string
	tmpl        *template.Template
}

type handler struct {
	o      Options
	mux    *http.ServeMux
	list   page
	exp    page
	cmp    page
	assets http.Handler
}

// contentTypes are set by extension rather than from the system's MIME
// table, which differs between machines: a module script served as
// anything but JavaScript is refused by the browser.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	"":      "text/plain; charset=utf-8", // LICENSE
}

// New returns the handler of the pages and their assets. It serves
//
//	/                      the experiments
//	/experiments/{id}      one experiment
//	/compare               the comparison (?experiments=A,B[,C…])
//	/assets/…              the embedded CSS, JavaScript and vendored chart library
//	/ui/experiments/{id}/latency-histogram   the latency distribution the experiment page draws
//
// and 404 for anything else, all under o.Prefix.
func New(o Options) (http.Handler, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Prefix == "/" {
		o.Prefix = ""
	}
	h := &handler{o: o, mux: http.NewServeMux()}
	var err error
	for _, p := range []struct {
		dst         *page
		name, title string
	}{
		{&h.list, "experiments", "Experiments"},
		{&h.exp, "experiment", "Experiment"},
		{&h.cmp, "compare", "Compare"},
	} {
		*p.dst = page{name: p.name, title: p.title}
		p.dst.tmpl, err = template.ParseFS(files, "templates/layout.html", "templates/"+p.name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", p.name, err)
		}
	}
	h.assets = http.StripPrefix("/assets/", http.FileServerFS(Assets()))
	h.mux.HandleFunc("GET /{$}", h.render(&h.list))
	h.mux.HandleFunc("GET /experiments/{id}", h.render(&h.exp))
	h.mux.HandleFunc("GET /compare", h.render(&h.cmp))
	h.mux.HandleFunc("GET /assets/", h.serveAsset)
	h.mux.HandleFunc("GET /ui/experiments/{id}/latency-histogram", h.latencyHistogram)
	h.mux.HandleFunc("/", http.NotFound)
	return http.StripPrefix(o.Prefix, h.mux), nil
}

// view is what the templates see.
type view struct {
	Page, Title string
	Base        string // the route prefix with a trailing slash
	Prefix      string
	Links       []Link
	ExtraHTML   template.HTML
	AdminAPI    bool
	Version     string
	ID          string // the experiment of /experiments/{id}
}

// csp keeps every page to its own origin and its own files: a page that
// tried to load anything from elsewhere, or to run or style anything
// inline, would be refused by the browser, and the end-to-end test would
// see the console error. (uPlot sets styles through the CSSOM, which the
// policy allows.)
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

func (h *handler) render(p *page) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := view{
			Page: p.name, Title: p.title, Base: h.o.Prefix + "/", Prefix: h.o.Prefix,
			Links: h.o.Links, ExtraHTML: h.o.ExtraHTML, AdminAPI: h.o.AdminAPI, Version: h.o.Version,
			ID: r.PathValue("id"),
		}
		if v.ID != "" {
			v.Title = v.ID
		}
		var b bytes.Buffer
		if err := p.tmpl.ExecuteTemplate(&b, "layout", v); err != nil {
			h.o.Logger.Error("rendering a page", "page", p.name, "err", err)
			http.Error(w, "rendering the page failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b.Bytes())
	}
}

func (h *handler) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/assets/")
	if strings.HasSuffix(name, "/") || name == "" {
		// No directory listings.
		http.NotFound(w, r)
		return
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The assets change with the binary only; a revalidation is cheap
	// (the embedded files have no modification time, so no 304 either:
	// they are small).
	w.Header().Set("Cache-Control", "no-cache")
	h.assets.ServeHTTP(w, r)
}

// errorBody is the API's error envelope (SPEC §2), so a page reads one
// shape of error whichever route it asked.
func writeError(w http.ResponseWriter, code int, typ, msg string) {
	writeJSON(w, code, map[string]string{"status": "error", "errorType": typ, "error": msg})
}

func classify(err error) (int, string) {
	switch {
	case errors.Is(err, experiment.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, experiment.ErrInvalid):
		return http.StatusBadRequest, "bad_data"
	case errors.Is(err, experiment.ErrNotReady), errors.Is(err, experiment.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.Canceled):
		return 499, "canceled"
	}
	return http.StatusInternalServerError, "internal"
}
