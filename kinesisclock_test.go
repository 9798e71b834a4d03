//go:build go1.25

package kcl

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// kinesisClock gives the last Date noted plus the time since, whatever
// this host's clock says, and this host's clock before any Date.
func TestKinesisClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var k kinesisClock
		assert.Equal(t, time.Now(), k.now(), "no Date: this host's clock")
		k.note(middleware.Metadata{})
		assert.Equal(t, time.Now(), k.now(), "an answer without a Date notes nothing")

		time.Sleep(1500 * time.Millisecond)
		kin := kinesisfake.New(kinesisfake.Options{Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
		kin.CreateStream("s", 1)
		out, err := kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("s")})
		require.NoError(t, err)
		k.note(out.ResultMetadata)
		time.Sleep(90 * time.Second)
		date := time.Now().Add(-2*time.Minute - 90*time.Second).Truncate(time.Second)
		assert.WithinDuration(t, date.Add(90*time.Second), k.now(), 0, "Kinesis's Date, in whole seconds, and the time since")
	})
}
