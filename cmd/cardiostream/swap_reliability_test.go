//go:build reliability

package main

import "testing"

// TestHotSwapUnderLoadHeavy is TestHotSwapUnderLoad with three scorer
// processes sharing the consumer and a deeper backlog: at least 200,000
// records, up to 50,000 unscored all along; 1.1.0 is activated after
// 60,000 predictions and rolled back 60,000 later. See runHotSwap.
func TestHotSwapUnderLoadHeavy(t *testing.T) {
	runHotSwap(t, hotSwapLoad{scorers: 3, minRecords: 200000, tail: 10000, backlog: 50000, activateAt: 60000, rollbackAfter: 60000})
}
