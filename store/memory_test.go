package store_test

import (
	"testing"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

func TestMemoryBackend(t *testing.T) {
	storetest.RunBackend(t, func(t *testing.T) store.Backend { return store.NewMemoryBackend() })
}
