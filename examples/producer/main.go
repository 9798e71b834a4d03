// Command producer writes records to a Kinesis stream, creating the stream
// if asked. Point it at AWS or at local emulators with
// AWS_ENDPOINT_URL_KINESIS:
//
//	go run ./examples/producer -stream orders -create 4 -n 1000 -rate 200
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

func main() {
	stream := flag.String("stream", "", "Kinesis stream name (required)")
	create := flag.Int("create", 0, "create the stream with this many shards if it does not exist")
	n := flag.Int("n", 1000, "records to write; 0 writes until interrupted")
	rate := flag.Int("rate", 100, "records per second")
	keys := flag.Int("keys", 100, "distinct partition keys")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *stream, *create, *n, *rate, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stream string, create, n, rate, keys int) error {
	if stream == "" {
		return errors.New("-stream is required")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	kc := kinesis.NewFromConfig(cfg)
	if create > 0 {
		_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(int32(create))})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return err
		}
		if err := kinesis.NewStreamExistsWaiter(kc).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, 5*time.Minute); err != nil {
			return err
		}
	}
	batch := max(1, min(500, rate/10))
	tick := time.NewTicker(time.Second * time.Duration(batch) / time.Duration(max(rate, 1)))
	defer tick.Stop()
	written := 0
	for n == 0 || written < n {
		size := batch
		if n > 0 {
			size = min(batch, n-written)
		}
		entries := make([]types.PutRecordsRequestEntry, size)
		for i := range entries {
			entries[i] = types.PutRecordsRequestEntry{
				PartitionKey: aws.String(fmt.Sprintf("key-%d", (written+i)%keys)),
				Data:         []byte(fmt.Sprintf(`{"n":%d,"at":%q}`, written+i, time.Now().Format(time.RFC3339Nano))),
			}
		}
		for len(entries) > 0 {
			out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: &stream, Records: entries})
			if err != nil {
				return err
			}
			var failed []types.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != nil {
					failed = append(failed, entries[i])
				}
			}
			written += len(entries) - len(failed)
			entries = failed
		}
		select {
		case <-ctx.Done():
			fmt.Printf("wrote %d records\n", written)
			return nil
		case <-tick.C:
		}
	}
	fmt.Printf("wrote %d records to %s\n", written, stream)
	return nil
}
