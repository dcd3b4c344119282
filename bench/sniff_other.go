//go:build !linux

package main

import "errors"

// sniffer is Linux-only; elsewhere scenario 2 reports no per-chunk delay.
type sniffer struct{}

func startSniffer(int) (*sniffer, error) {
	return nil, errors.New("packet capture needs Linux")
}

func (*sniffer) take(string) []int64 { return nil }
func (*sniffer) forget() int         { return 0 }
func (*sniffer) drops() int          { return 0 }
func (*sniffer) close() error        { return nil }
