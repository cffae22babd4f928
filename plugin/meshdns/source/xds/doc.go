// Package xds is the ADS client the control-plane sources share (nds, ambient): one stream, state of
// the world or delta, ACK or NACK with the reason, reconnection with jittered backoff, keepalive,
// credentials read afresh for each stream, and, for a source that wants it, what it applied kept
// across Corefile reloads. Each source decodes its own resources.
package xds
