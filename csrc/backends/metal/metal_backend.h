// The Metal backend's host-side entry points. Plain C++ (no Objective-C), so the bindings
// compile on every platform; the definitions live in metal_backend.mm, built only on macOS
// (STRATA_HAVE_METAL, see docs/metal.md for the CMake lines).
//
// Status: the host runtime (device, queue, pipeline cache, no-copy weight buffers, one
// command buffer per step) is written; graph execution is not wired yet, and none of this
// has run on a Mac (docs/metal.md).
#pragma once

#include <memory>
#include <string>

#include "../../core/backend.h"

namespace strata::metal {

// True when MTLCreateSystemDefaultDevice() returns a device. Never throws.
bool metal_available();

// One line about the device ("Apple M1 Pro, unified memory, max buffer 24 GiB, ...").
std::string device_description();

// A backend on the default device. Throws StrataError when there is none, and
// UnsupportedError from prepare() until graph execution lands.
std::unique_ptr<Backend> make_metal_backend();

}  // namespace strata::metal
