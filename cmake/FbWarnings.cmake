# SPDX-License-Identifier: MIT
# Warning flags, each checked with the compiler in use and explained (curl PickyWarnings.cmake).
include(CheckCCompilerFlag)

set(FB_WARNING_FLAGS "")
macro(fb_try_warning flag)
  string(MAKE_C_IDENTIFIER "HAVE_C${flag}" var)
  check_c_compiler_flag(${flag} ${var})
  if(${var})
    list(APPEND FB_WARNING_FLAGS ${flag})
  endif()
endmacro()

fb_try_warning(-Wall)
fb_try_warning(-Wextra)
if(FB_PICKY_WARNINGS)
  fb_try_warning(-Wpedantic)                  # stay within ISO C
  fb_try_warning(-Wshadow)                    # a local hiding another is a bug waiting
  fb_try_warning(-Wstrict-prototypes)         # f() must be f(void)
  fb_try_warning(-Wmissing-prototypes)        # non-static functions need a declaration
  fb_try_warning(-Wmissing-declarations)
  fb_try_warning(-Wold-style-definition)
  fb_try_warning(-Wpointer-arith)             # no arithmetic on void *
  fb_try_warning(-Wcast-align)
  fb_try_warning(-Wcast-qual)                 # casting const away hides ownership bugs
  fb_try_warning(-Wwrite-strings)             # string literals are const char[]
  fb_try_warning(-Wformat=2)                  # printf-like formats checked, incl. non-literals
  fb_try_warning(-Wformat-security)
  fb_try_warning(-Wundef)                     # #if on an undefined macro is a typo
  fb_try_warning(-Wvla)                       # no variable-length arrays on the stack
  fb_try_warning(-Wswitch-enum)               # every enum value handled or defaulted explicitly
  fb_try_warning(-Wdouble-promotion)
  fb_try_warning(-Wconversion)                # narrowing conversions must be explicit
  fb_try_warning(-Wno-sign-conversion)        # too noisy with libc and library size_t/int mixes
  fb_try_warning(-Werror=implicit-function-declaration)
  fb_try_warning(-Werror=incompatible-pointer-types)
endif()

function(fb_target_warnings target)
  target_compile_options(${target} PRIVATE ${FB_WARNING_FLAGS} -fno-omit-frame-pointer)
  if(FB_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(CMAKE_BUILD_TYPE MATCHES "Rel" AND NOT FB_ASAN)
    target_compile_options(${target} PRIVATE -fstack-protector-strong -D_FORTIFY_SOURCE=2)
  endif()
endfunction()
