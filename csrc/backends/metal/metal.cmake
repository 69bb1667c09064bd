# The Metal backend (csrc/backends/metal + metal/*.metal), built on Apple platforms only.
# Included from the top-level CMakeLists.txt after the _core target exists (docs/metal.md
# gives the lines). Off with -DSTRATA_METAL=OFF.
#
#  1. Shaders: each metal/*.metal is compiled with `xcrun metal` to AIR and linked with
#     `xcrun metallib` into strata.metallib. Without the Metal toolchain (command line tools
#     only, or Xcode 26+ without the downloadable Metal toolchain) the metallib is left empty
#     and the host compiles the embedded source at run time instead.
#  2. Embedding: embed_metal.cmake writes strata_metal_embed.c with the metallib bytes and
#     the shader sources concatenated (strata_args.h and quants.h inlined), so the extension needs no
#     side files.
#  3. Host: the Objective-C++ sources, ARC, linked with Metal and Foundation.

option(STRATA_METAL "build the Metal backend on Apple platforms" ON)
set(STRATA_HAVE_METAL OFF)
if(APPLE AND STRATA_METAL)
  enable_language(OBJCXX)
  set(STRATA_METAL_DIR ${CMAKE_CURRENT_SOURCE_DIR}/metal)
  file(GLOB STRATA_METAL_SHADERS CONFIGURE_DEPENDS ${STRATA_METAL_DIR}/*.metal)
  set(STRATA_METALLIB ${CMAKE_CURRENT_BINARY_DIR}/strata.metallib)

  execute_process(COMMAND xcrun -sdk macosx -f metal RESULT_VARIABLE _metal_rc OUTPUT_QUIET ERROR_QUIET)
  if(_metal_rc EQUAL 0)
    set(_airs)
    foreach(src ${STRATA_METAL_SHADERS})
      get_filename_component(stem ${src} NAME_WE)
      set(air ${CMAKE_CURRENT_BINARY_DIR}/metal/${stem}.air)
      add_custom_command(
        OUTPUT ${air}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/metal
        COMMAND xcrun -sdk macosx metal -std=metal3.0 -O2 -Wall -fno-fast-math
                -I ${STRATA_METAL_DIR} -c ${src} -o ${air}
        DEPENDS ${src} ${STRATA_METAL_DIR}/strata_args.h ${STRATA_METAL_DIR}/quants.h
        COMMENT "metal ${stem}.metal")
      list(APPEND _airs ${air})
    endforeach()
    add_custom_command(
      OUTPUT ${STRATA_METALLIB}
      COMMAND xcrun -sdk macosx metallib ${_airs} -o ${STRATA_METALLIB}
      DEPENDS ${_airs}
      COMMENT "metallib strata.metallib")
  else()
    message(WARNING "strata: no Metal compiler (xcrun metal); shaders will be compiled at run time")
    file(WRITE ${STRATA_METALLIB} "")
  endif()

  set(STRATA_METAL_EMBED ${CMAKE_CURRENT_BINARY_DIR}/strata_metal_embed.c)
  add_custom_command(
    OUTPUT ${STRATA_METAL_EMBED}
    COMMAND ${CMAKE_COMMAND} -DMETALLIB=${STRATA_METALLIB} -DMETAL_DIR=${STRATA_METAL_DIR}
            -DOUT=${STRATA_METAL_EMBED} -P ${CMAKE_CURRENT_SOURCE_DIR}/csrc/backends/metal/embed_metal.cmake
    DEPENDS ${STRATA_METALLIB} ${STRATA_METAL_SHADERS} ${STRATA_METAL_DIR}/strata_args.h ${STRATA_METAL_DIR}/quants.h
            ${CMAKE_CURRENT_SOURCE_DIR}/csrc/backends/metal/embed_metal.cmake
    COMMENT "embedding Metal shaders")

  target_sources(_core PRIVATE
    csrc/backends/metal/metal_backend.mm
    csrc/backends/metal/metal_context.mm
    ${STRATA_METAL_EMBED})
  set_source_files_properties(csrc/backends/metal/metal_backend.mm csrc/backends/metal/metal_context.mm
    PROPERTIES COMPILE_OPTIONS "-fobjc-arc;-std=c++20")
  target_link_libraries(_core PRIVATE "-framework Metal" "-framework Foundation")
  target_compile_definitions(_core PRIVATE STRATA_HAVE_METAL=1)
  set(STRATA_HAVE_METAL ON)
  message(STATUS "strata: Metal backend on")
endif()
