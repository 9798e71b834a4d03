package kcl

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"

	"google.golang.org/protobuf/encoding/protowire"
)

// KPL aggregated records (the Kinesis Producer Library's format): the magic
// bytes, a protobuf AggregatedRecord, then the MD5 of the protobuf bytes.
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
var kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// isAggregated reports whether data starts with the KPL magic bytes. It is
// called on every record, so it is kept small enough to inline.
func isAggregated(data []byte) bool {
	return len(data) >= 4 && data[0] == kplMagic[0] && data[1] == kplMagic[1] && data[2] == kplMagic[2] && data[3] == kplMagic[3]
}

// userRecord is one user record inside an aggregate. data aliases the
// aggregate's bytes, capped at its own end, so that an append to it copies
// instead of writing over the next user record.
type userRecord struct {
	partitionKey    string
	explicitHashKey string
	data            []byte
}

// deaggregate splits a KPL aggregated record into its user records.
// isAggregate is false when data does not start with the magic bytes: it is a
// plain record. err says why an aggregate is malformed (bad MD5, bad
// protobuf, an index out of its table); the caller then delivers it whole.
func deaggregate(data []byte) (records []userRecord, isAggregate bool, err error) {
	if !isAggregated(data) {
		return nil, false, nil
	}
	if len(data) < len(kplMagic)+md5.Size {
		return nil, true, errors.New("aggregate shorter than its magic bytes and MD5")
	}
	body := data[len(kplMagic) : len(data)-md5.Size]
	if sum := md5.Sum(body); !bytes.Equal(sum[:], data[len(data)-md5.Size:]) {
		return nil, true, errors.New("aggregate MD5 does not match")
	}
	var pkTable, ehkTable []string
	var raws []kplRecord
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, true, fmt.Errorf("aggregate: %w", protowire.ParseError(n))
		}
		body = body[n:]
		if typ != protowire.BytesType || num < 1 || num > 3 {
			n = protowire.ConsumeFieldValue(num, typ, body)
			if n < 0 {
				return nil, true, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
			}
			body = body[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(body)
		if n < 0 {
			return nil, true, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
		}
		body = body[n:]
		switch num {
		case 1:
			pkTable = append(pkTable, string(v))
		case 2:
			ehkTable = append(ehkTable, string(v))
		case 3:
			r, err := parseRawRecord(v, len(raws))
			if err != nil {
				return nil, true, err
			}
			raws = append(raws, r)
		}
	}
	records = make([]userRecord, len(raws))
	for i, r := range raws {
		if !r.hasPK || !r.hasData {
			return nil, true, fmt.Errorf("aggregate record %d lacks its partition key index or data", i)
		}
		if r.pk >= uint64(len(pkTable)) {
			return nil, true, fmt.Errorf("aggregate record %d: partition key index %d out of a table of %d", i, r.pk, len(pkTable))
		}
		records[i] = userRecord{partitionKey: pkTable[r.pk], data: r.data[:len(r.data):len(r.data)]}
		if r.hasEHK {
			if r.ehk >= uint64(len(ehkTable)) {
				return nil, true, fmt.Errorf("aggregate record %d: explicit hash key index %d out of a table of %d", i, r.ehk, len(ehkTable))
			}
			records[i].explicitHashKey = ehkTable[r.ehk]
		}
	}
	if len(records) == 0 {
		return nil, true, errors.New("aggregate holds no record")
	}
	return records, true, nil
}

// kplRecord is one record of an aggregate as encoded: indexes into the
// aggregate's key tables, and the data.
type kplRecord struct {
	pk, ehk       uint64
	hasPK, hasEHK bool
	hasData       bool
	data          []byte
}

// parseRawRecord parses v, the encoding of the aggregate's record number i.
func parseRawRecord(v []byte, i int) (kplRecord, error) {
	var r kplRecord
	for len(v) > 0 {
		rnum, rtyp, n := protowire.ConsumeTag(v)
		if n < 0 {
			return r, fmt.Errorf("aggregate record %d: %w", i, protowire.ParseError(n))
		}
		v = v[n:]
		switch {
		case rnum == 1 && rtyp == protowire.VarintType:
			r.pk, n = protowire.ConsumeVarint(v)
			r.hasPK = true
		case rnum == 2 && rtyp == protowire.VarintType:
			r.ehk, n = protowire.ConsumeVarint(v)
			r.hasEHK = true
		case rnum == 3 && rtyp == protowire.BytesType:
			r.data, n = protowire.ConsumeBytes(v)
			r.hasData = true
		default:
			n = protowire.ConsumeFieldValue(rnum, rtyp, v)
		}
		if n < 0 {
			return r, fmt.Errorf("aggregate record %d field %d: %w", i, rnum, protowire.ParseError(n))
		}
		v = v[n:]
	}
	return r, nil
}

// hashRange is a shard's hash-key range, as 128-bit big-endian numbers. The
// zero value is a range not known yet, which contains every key.
type hashRange struct {
	first, last [16]byte
	known       bool
}

// newHashRange returns the range from first to last, as ListShards gave
// them; unknown when either is missing or out of 128 bits.
func newHashRange(first, last *big.Int) hashRange {
	if first == nil || last == nil || first.Sign() < 0 || last.Sign() < 0 || first.BitLen() > 128 || last.BitLen() > 128 {
		return hashRange{}
	}
	var r hashRange
	first.FillBytes(r.first[:])
	last.FillBytes(r.last[:])
	r.known = true
	return r
}

// holds reports whether the shard owns user record u: whether the key
// Kinesis routes u by, its explicit hash key or else the MD5 of its
// partition key, is in the range (pageRecords.misplaced). An explicit hash
// key that is no number of 128 bits is held: what cannot be judged is not
// called misplaced.
func (r hashRange) holds(u userRecord) bool {
	if !r.known {
		return true
	}
	var k [16]byte
	if u.explicitHashKey != "" {
		n, ok := new(big.Int).SetString(u.explicitHashKey, 10)
		if !ok || n.Sign() < 0 || n.BitLen() > 128 {
			return true
		}
		n.FillBytes(k[:])
	} else {
		k = md5.Sum([]byte(u.partitionKey))
	}
	return bytes.Compare(k[:], r.first[:]) >= 0 && bytes.Compare(k[:], r.last[:]) <= 0
}
