// Command prometheus consumes a stream with kcl and exports Consumer.Stats as
// Prometheus metrics on 127.0.0.1:9108/metrics (-listen to change it). It
// is a module of its own, so that kcl itself never depends on Prometheus.
//
//	go run . -stream orders -app billing
//
// grafana-dashboard.json shows these metrics: in Grafana, Dashboards >
// New > Import, upload the file and pick the Prometheus data source that
// scrapes this endpoint. Its panels: lag and age of the last record per
// shard, records and bytes per second delivered and acked, unacked records
// per shard, leases per worker, retries, throttles and iterator refreshes,
// and checkpoint age; a variable filters by worker. A test checks that
// every metric it queries is one this program exports.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kclgo/kcl"
)

func main() {
	stream := flag.String("stream", "", "Kinesis stream name (required)")
	app := flag.String("app", "", "application name (lease table)")
	addr := flag.String("listen", "127.0.0.1:9108", "where /metrics is served")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := kcl.New(kcl.Options{StreamName: *stream, AppName: *app, Logger: slog.Default()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	reg, err := newRegistry(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	srv := &http.Server{Addr: *addr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()

	for rec := range c.Consume(ctx) {
		_ = rec.Data // handle the record here
		rec.Ack()
	}
	if err := c.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// newRegistry is the registry main serves: kcl's metrics from src, nothing
// else. grafana-dashboard.json queries them (a test checks it).
func newRegistry(src StatsSource) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(src)); err != nil {
		return nil, fmt.Errorf("registering kcl's collector: %w", err)
	}
	return reg, nil
}

// StatsSource is what the collector reads; *kcl.Consumer satisfies it.
type StatsSource interface{ Stats() kcl.Stats }

// Collector turns a kcl.Stats snapshot into Prometheus metrics at each
// scrape: no background goroutine, nothing cached.
type Collector struct {
	src StatsSource

	leases, retries, throttles, refreshes         *prometheus.Desc
	behind, age, delivered, acked, bytes, unacked *prometheus.Desc
	checkpointAge, oldest                         *prometheus.Desc
}

// NewCollector describes the metrics of src.
func NewCollector(src StatsSource) *Collector {
	shard := []string{"worker", "stream", "shard"} // stream: its ARN (shard IDs repeat across Options.Streams)
	worker := []string{"worker"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("kcl_"+name, help, labels, nil)
	}
	return &Collector{
		src:           src,
		leases:        d("leases_held", "Leases this worker holds.", worker),
		retries:       d("retries_total", "Calls retried after a transient error.", worker),
		throttles:     d("throttles_total", "Calls refused for a limit.", worker),
		refreshes:     d("iterator_refreshes_total", "Shard iterators reopened after expiring.", worker),
		behind:        d("millis_behind_latest", "How far the reader is from the tip of the shard, as Kinesis says.", shard),
		age:           d("last_record_age_seconds", "Time since the last record read from the shard arrived in Kinesis (set when its page is received, before it is delivered).", shard),
		delivered:     d("records_delivered_total", "Records delivered since this worker took the lease.", shard),
		acked:         d("records_acked_total", "Records acked since this worker took the lease.", shard),
		bytes:         d("bytes_delivered_total", "Bytes delivered since this worker took the lease.", shard),
		unacked:       d("records_unacked", "Delivered records not yet acked.", shard),
		checkpointAge: d("checkpoint_age_seconds", "Time since this worker last wrote the shard's checkpoint.", shard),
		oldest:        d("oldest_unacked_age_seconds", "How long ago the oldest record delivered and not yet acked arrived in Kinesis; 0 when all are acked. It keeps growing while a shard is stalled.", shard),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leases, c.retries, c.throttles, c.refreshes, c.behind, c.age, c.delivered, c.acked, c.bytes, c.unacked, c.checkpointAge, c.oldest} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	w := s.WorkerID
	ch <- prometheus.MustNewConstMetric(c.leases, prometheus.GaugeValue, float64(s.LeasesHeld), w)
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(s.Retries), w)
	ch <- prometheus.MustNewConstMetric(c.throttles, prometheus.CounterValue, float64(s.Throttles), w)
	ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(s.IteratorRefreshes), w)
	for _, sh := range s.Shards {
		if !sh.Held {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(sh.MillisBehindLatest), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, sh.LastRecordAge.Seconds(), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.delivered, prometheus.CounterValue, float64(sh.RecordsDelivered), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.acked, prometheus.CounterValue, float64(sh.RecordsAcked), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(sh.BytesDelivered), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(sh.Unacked), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.checkpointAge, prometheus.GaugeValue, sh.CheckpointAge.Seconds(), w, sh.StreamARN, sh.ShardID)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, sh.OldestUnackedAge.Seconds(), w, sh.StreamARN, sh.ShardID)
	}
}
