// The Metal runtime the backend drives, behind a plain C++ interface (PIMPL: no Objective-C
// types here, so unit code and the bindings stay C++):
//   - one device and one command queue;
//   - the shader library: the metallib CMake compiled with xcrun and embedded in the
//     extension, or, failing that, the embedded MSL source compiled at run time; compiler
//     errors become StrataError carrying Metal's log;
//   - a pipeline cache keyed by kernel name + function-constant values;
//   - buffers: the model mapping wrapped without copying (newBufferWithBytesNoCopy over the
//     page-aligned mmap; unified memory), and private/shared allocations for the activation
//     arena and the KV cache;
//   - steps: one command buffer and one compute encoder per step (concurrent dispatch),
//     with a buffer barrier only where a kernel reads what an earlier kernel wrote.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernel_table.h"

namespace strata::metal {

// A buffer as kernels see it: an opaque handle plus a byte offset into it.
struct BufferRef {
    int handle = -1;
    int64_t offset = 0;
};

class MetalContext {
public:
    MetalContext();  // throws StrataError when there is no Metal device
    ~MetalContext();
    MetalContext(const MetalContext&) = delete;
    MetalContext& operator=(const MetalContext&) = delete;

    std::string describe() const;
    uint64_t max_buffer_length() const;
    uint64_t recommended_working_set() const;

    // Wrap [ptr, ptr + bytes) without copying. ptr must be page aligned; bytes is rounded up
    // to the page size (the mapping covers the last page). Buffers longer than
    // max_buffer_length() are split by the caller (wrap_mapping does it for the model file).
    int wrap_no_copy(const void* ptr, uint64_t bytes);
    // The model mapping as buffers of at most max_buffer_length(), overlapping by `overlap`
    // bytes so that no tensor smaller than that straddles two of them. Returns handles in
    // order; locate() finds the buffer and offset of a file range.
    void wrap_mapping(const uint8_t* base, uint64_t bytes, uint64_t overlap);
    BufferRef locate(uint64_t file_offset, uint64_t bytes) const;
    // A new buffer: private to the GPU, or shared (host-visible: outputs, step inputs).
    int allocate(uint64_t bytes, bool host_visible, const char* label);
    void* contents(int handle) const;  // shared buffers only

    // A pipeline for kernel k with function constants fc, created once and then cached by
    // name + constants; returns its handle for dispatch().
    int pipeline(const KernelInfo& k, const ConstValues& fc);
    int max_threads(int pipeline) const;

    // ---- one step ----
    void begin_step();
    // Dispatch a pipeline over groups[3] threadgroups of threads[3] threads, with args
    // (args_size bytes, the struct of kernels.def) at index 0 and buffers at 1, 2, ...
    // (handle -1: nothing bound there). Allocates nothing: it runs for every node of every step.
    void dispatch(int pipeline, const void* args, size_t args_size, const BufferRef* buffers, int n_buffers,
                  const uint32_t groups[3], const uint32_t threads[3]);
    // Make every write of earlier dispatches visible to later ones (MTLBarrierScopeBuffers).
    void barrier();
    // Commit, wait, and throw StrataError with Metal's message if the command buffer failed.
    void end_step();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::metal
