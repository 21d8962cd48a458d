// CUDA events for the step profiler (ops/profiler.h): opaque handles so that code outside the CUDA
// backend needs no CUDA header. C++17, no fmt.
#pragma once

namespace sambalm::ops::cuda {

void* event_create();                             // cudaEvent_t with timing
void event_destroy(void* event);                  // nullptr: nothing
void event_record(void* event, void* stream);     // queued on the stream, no synchronisation
void event_synchronize(void* event);              // waits until the event has happened
float event_elapsed_ms(void* start, void* stop);  // both must have happened

}  // namespace sambalm::ops::cuda
