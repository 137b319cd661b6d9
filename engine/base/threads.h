// A persistent thread pool: threads are created once and reused by every parallel loop,
// so no operator pays for thread creation (decode runs thousands of small ops per token).
#pragma once

#include <cstdint>
#include <functional>

namespace dsv3 {

// Sets the number of worker threads (including the caller). 0 means hardware concurrency.
void SetNumThreads(int n);
int NumThreads();

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread, and waits.
// Chunks are at least `grain` items. Nested calls run inline on the calling thread.
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Like ParallelFor, for work whose threads may finish far apart (memory streams that meet a
// shared VM's neighbours, items of uneven cost): fn is called with pieces of `piece` items (the
// last may be shorter), possibly several per thread; on one thread, or for at most one piece
// of work, once with [0, n). Each thread starts on its own contiguous share and walks it front
// to back; a thread whose share is done takes pieces from the back of the share with the most
// left. Every item runs exactly once; which thread runs it varies.
void ParallelForBalanced(int64_t n, int64_t piece, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace dsv3
