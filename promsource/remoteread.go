package promsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Remote read: one request per experiment, answered with streamed XOR
// chunks (Prometheus, Mimir, the sidecar) that the receiver sends without
// evaluating or encoding samples one by one, as it must for the query
// API's JSON. The request is built and the answer decoded here, so that
// the answer's status and type tell a receiver without remote read from
// one that failed, and a malformed answer is an error (Prometheus' chunked
// series set panics on an empty frame); the messages, the frame reader
// and the chunk encoding are Prometheus' own.

// maxFrameBytes bounds one frame of a streamed answer (Prometheus sends
// 1 MiB frames).
const maxFrameBytes = 50 << 20

// noRemoteRead means the receiver answered that it serves no remote read.
type noRemoteRead struct{ answer string }

func (e *noRemoteRead) Error() string {
	return "the receiver does not serve remote read (" + e.answer + "); read through its query API with --prometheus.read=query"
}

// readRemote reads (startMs, endMs] with one remote-read request.
func (s *Source) readRemote(ctx context.Context, id string, f Filter, startMs, endMs int64, g *grouper) error {
	ms := s.matchers(labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, sampleMetrics), id, f)
	// Remote read's range is closed: (start, end] is [start+1, end].
	q, err := remote.ToQuery(startMs+1, endMs, ms, &storage.SelectHints{Start: startMs + 1, End: endMs})
	if err != nil {
		return err
	}
	rr := &prompb.ReadRequest{
		Queries:               []*prompb.Query{q},
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS, prompb.ReadRequest_SAMPLES},
	}
	raw, err := rr.Marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL+"/api/v1/read", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	for k, vs := range s.o.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Accept-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("remote read: %w", err)
	}
	defer resp.Body.Close()
	ctype, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg := fmt.Sprintf("%d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		// A receiver without the endpoint answers 404 or 405, or
		// (VictoriaMetrics) 400 in plain text; one that has it answers
		// its errors in plain text too, but not with these statuses
		// before it read the request.
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return &noRemoteRead{msg}
		case http.StatusBadRequest:
			if strings.Contains(string(body), "unsupported path") {
				return &noRemoteRead{msg}
			}
		}
		return fmt.Errorf("remote read answered %s", msg)
	}
	keep := func(t int64) bool { return t > startMs && t <= endMs }
	switch {
	case ctype == "application/x-streamed-protobuf" && params["proto"] == "prometheus.ChunkedReadResponse":
		return streamedAnswer(resp.Body, g, keep)
	case ctype == "application/x-protobuf":
		return sampledAnswer(resp.Body, g, keep)
	}
	return &noRemoteRead{fmt.Sprintf("%d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))}
}

// metricOf is a series' labels as the grouper takes them.
func metricOf(ls []prompb.Label) model.Metric {
	m := make(model.Metric, len(ls))
	for _, l := range ls {
		m[model.LabelName(l.Name)] = model.LabelValue(l.Value)
	}
	return m
}

// streamedAnswer decodes a streamed answer: frames of XOR chunks, a
// series' chunks in one frame or more. Chunks are whole, so they may hold
// samples outside the range: keep tells.
func streamedAnswer(body io.Reader, g *grouper, keep func(int64) bool) error {
	r := remote.NewChunkedReader(body, maxFrameBytes, nil)
	var it chunkenc.Iterator
	for {
		var res prompb.ChunkedReadResponse
		if err := r.NextProto(&res); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("remote read: %w", err)
		}
		for _, cs := range res.ChunkedSeries {
			m := metricOf(cs.Labels)
			sr, err := g.series(m)
			if err != nil {
				return err
			}
			for _, c := range cs.Chunks {
				if c.Type != prompb.Chunk_XOR {
					return fmt.Errorf("remote read: %s holds a %s chunk, want float samples", m, c.Type)
				}
				chk, err := chunkenc.FromData(chunkenc.EncXOR, c.Data)
				if err != nil {
					return fmt.Errorf("remote read: %w", err)
				}
				it = chk.Iterator(it)
				for it.Next() == chunkenc.ValFloat {
					if t, v := it.At(); keep(t) {
						g.add(sr, t, v)
					}
				}
				if err := it.Err(); err != nil {
					return fmt.Errorf("remote read: %s: %w", m, err)
				}
			}
		}
	}
}

// sampledAnswer decodes an answer of samples (the older response type,
// for receivers without streamed chunks).
func sampledAnswer(body io.Reader, g *grouper, keep func(int64) bool) error {
	compressed, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("remote read: %w", err)
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		return fmt.Errorf("remote read: %w", err)
	}
	var rr prompb.ReadResponse
	if err := rr.Unmarshal(raw); err != nil {
		return fmt.Errorf("remote read: %w", err)
	}
	if len(rr.Results) != 1 {
		return fmt.Errorf("remote read: %d results to one query", len(rr.Results))
	}
	for _, ts := range rr.Results[0].Timeseries {
		if len(ts.Histograms) > 0 {
			return fmt.Errorf("remote read: %s holds histogram samples", metricOf(ts.Labels))
		}
		sr, err := g.series(metricOf(ts.Labels))
		if err != nil {
			return err
		}
		for _, smp := range ts.Samples {
			if keep(smp.Timestamp) {
				g.add(sr, smp.Timestamp, smp.Value)
			}
		}
	}
	return nil
}
