// Package hist is a latency histogram of fixed memory: log-linear buckets,
// 32 per power of two, so any quantile is within ~3% of the truth however
// long the run. The demo and the load generator share it.
package hist
