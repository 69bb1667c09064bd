// Declarations transcribed from Apple's Foundation / libdispatch documentation: only what
// csrc/backends/metal uses, with Apple's exact selector names, parameter types and
// nullability left out. For `clang -fsyntax-only` on Linux (tests/metal/test_host_compiles.py):
// a misspelt selector or a wrong argument type in the host fails there as it would on macOS.
// Not a Foundation implementation; nothing here links or runs.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef unsigned long NSUInteger;
typedef long NSInteger;
typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
#define nil ((id)0)

@protocol NSObject
@end

__attribute__((objc_root_class))
@interface NSObject <NSObject> {
    Class isa;
}
+ (instancetype)new;
+ (instancetype)alloc;
- (instancetype)init;
@end

@interface NSString : NSObject
+ (instancetype)stringWithUTF8String:(const char*)nullTerminatedCString;
@property(readonly) const char* UTF8String;
@end

@interface NSError : NSObject
@property(readonly, copy) NSString* localizedDescription;
@end

// libdispatch (pulled in by Foundation on macOS)
typedef struct dispatch_data_s* dispatch_data_t;
typedef struct dispatch_queue_s* dispatch_queue_t;
typedef void (^dispatch_block_t)(void);
extern dispatch_block_t _dispatch_data_destructor_default;
#define DISPATCH_DATA_DESTRUCTOR_DEFAULT _dispatch_data_destructor_default
dispatch_data_t dispatch_data_create(const void* buffer, size_t size, dispatch_queue_t queue,
                                     dispatch_block_t destructor);
