// Memory bandwidth of this machine, measured the way a decode step uses memory: streaming reads of a
// buffer far larger than the caches, on all OpenMP threads. Decoding at batch 1 reads every weight
// once per token, so weight bytes / read bandwidth is the fastest a token can be produced.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sambalm {

struct Bandwidth {
  double read_gbs = 0;    // bytes read per second (a sum over the buffer), 1e9 bytes/s
  double memcpy_gbs = 0;  // bytes copied per second (memcpy of the buffer; each byte read and written)
};

// Best of `reps` passes over a buffer of `bytes` (default 512 MiB).
Bandwidth measure_bandwidth(size_t bytes = size_t(512) << 20, int reps = 5);

// Seconds to read p[0, n) once, summing on all OpenMP threads (each thread its own contiguous part,
// as 8 concurrent streams):
// timed next to a decode step over the weights themselves, the time that step could not beat.
double read_seconds(const float* p, int64_t n);

}  // namespace sambalm
