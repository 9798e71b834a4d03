// Command otel consumes a stream with kcl and exports Consumer.Stats as
// OpenTelemetry metrics over OTLP/HTTP, every 30s (-interval). The
// exporter reads the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT
// (default http://localhost:4318), OTEL_EXPORTER_OTLP_HEADERS, and so on.
// It is a module of its own, so that kcl itself never depends on
// OpenTelemetry. README.md lists the metrics.
//
//	go run . -stream orders -app billing
//
// In a program of your own, call Register with your MeterProvider's meter:
// it adds one callback that reads Stats at each collection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/kclgo/kcl"
)

func main() {
	stream := flag.String("stream", "", "Kinesis stream name (required)")
	app := flag.String("app", "", "application name (lease table)")
	interval := flag.Duration("interval", 30*time.Second, "how often metrics are exported")
	flag.Parse()
	if err := run(*stream, *app, *interval); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(stream, app string, interval time.Duration) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := kcl.New(kcl.Options{StreamName: stream, AppName: app, Logger: slog.Default()})
	if err != nil {
		return err
	}
	exp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return fmt.Errorf("otel: OTLP exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if serr := provider.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("otel: shutting down the meter provider: %w", serr))
		}
	}()
	if _, err := Register(provider.Meter("github.com/kclgo/kcl"), c, Config{Stream: stream, Group: app}); err != nil {
		return err
	}

	for rec := range c.Consume(ctx) {
		_ = rec.Data // handle the record here
		rec.Ack()
	}
	return c.Err()
}
