// The Metal backend's host-side entry points. Plain C++ (no Objective-C), so the bindings
// compile on every platform; the definitions live in metal_backend.mm, built only on macOS
// (STRATA_HAVE_METAL, see docs/metal.md for the CMake lines).
//
// Status: graph execution is written (metal_backend.mm replays metal_plan.h's dispatch list,
// checked on Linux), but none of this has run on a Mac (docs/metal.md), so backend="auto"
// does not pick Metal unless STRATA_METAL_AUTO=1.
#pragma once

#include <memory>
#include <string>

#include "../../core/backend.h"

namespace strata::metal {

// True when MTLCreateSystemDefaultDevice() returns a device. Never throws.
bool metal_available();

// One line about the device ("Apple M1 Pro, unified memory, max buffer 24 GiB, ...").
std::string device_description();

// A backend on the default device. Throws StrataError when there is none; its prepare()
// throws UnsupportedError naming each op / weight type that has no Metal kernel yet.
std::unique_ptr<Backend> make_metal_backend();

}  // namespace strata::metal
