# node-gyp build of rapm.node: the same sources and flags as CMakeLists.txt.
#
# gyp has no per-source flags, so each instruction set is its own static library
# (rapm_avx2, rapm_avx512, rapm_avx512vnni, rapm_avx512bf16 on x64; rapm_neon on arm64) linked into the `rapm` addon.
# gyp has no glob either: sources are listed by file suffix at configure time
# (rapm_ls below), so new native/*.cpp, native/core/*.cpp and
# native/kernels/*_{scalar,avx2,avx512,avx512vnni,avx512bf16,neon}.cpp files are picked up without edits
# (re-run `node-gyp configure` after adding one).
#
# The addon is always built for the baseline ISA: no -march=native anywhere.
{
  'variables': {
    # rapm_ls DIR SUFFIX -> space-separated DIR/*SUFFIX, sorted. Runs in this file's
    # directory; single quotes inside, double quotes around, so sh and cmd.exe both work.
    'rapm_ls': "node -p \"const fs=require('fs'),a=process.argv.slice(1);fs.existsSync(a[0])?fs.readdirSync(a[0]).filter(f=>f.endsWith(a[1])).sort().map(f=>a[0]+'/'+f).join(' '):''\"",
    'rapm_napi_include': "<!(node -p \"require('node-addon-api').include_dir\")",
  },
  'target_defaults': {
    'include_dirs': ['<(rapm_napi_include)'],
    'defines': [
      'NAPI_VERSION=8',
      'NAPI_CPP_EXCEPTIONS',
      'NODE_ADDON_API_DISABLE_DEPRECATED',
      'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',  # see CMakeLists.txt
    ],
    # Same as the CMake build: -std=c++17 (CMAKE_CXX_EXTENSIONS OFF, not node's gnu++17),
    # exceptions and RTTI on (node's common.gypi turns both off), hidden visibility.
    'cflags': ['-fvisibility=hidden', '-Wall', '-Wextra', '-Wno-unused-parameter'],
    'cflags!': ['-fno-exceptions'],
    'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-std=gnu++20'],
    'cflags_cc': ['-std=c++17', '-fexceptions'],
    'configurations': {
      'Release': {
        'defines': ['NDEBUG'],
        'cflags': ['-O3'],
        'xcode_settings': {'GCC_OPTIMIZATION_LEVEL': '3'},
        # MSVC: node's common.gypi already sets /Ox for Release.
      },
    },
    'conditions': [
      ['OS=="win"', {
        'defines': ['_HAS_EXCEPTIONS=1'],
        'msvs_settings': {
          'VCCLCompilerTool': {
            'ExceptionHandling': 1,  # /EHsc
            'AdditionalOptions': ['/std:c++17'],
          },
        },
      }],
      ['OS=="mac"', {
        'xcode_settings': {
          'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
          'CLANG_CXX_LIBRARY': 'libc++',
          'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
          'GCC_ENABLE_CPP_RTTI': 'YES',
          'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',  # -fvisibility=hidden
          'MACOSX_DEPLOYMENT_TARGET': '10.15',
        },
      }],
    ],
  },
  'targets': [
    {
      'target_name': 'rapm',
      'sources': [
        '<!@(<(rapm_ls) native .cpp)',
        '<!@(<(rapm_ls) native/core .cpp)',
        '<!@(<(rapm_ls) native/kernels _scalar.cpp)',
      ],
      'conditions': [
        ['target_arch=="x64"', {'dependencies': ['rapm_avx2', 'rapm_avx512', 'rapm_avx512vnni', 'rapm_avx512bf16']}],
        ['target_arch=="arm64"', {'dependencies': ['rapm_neon']}],
      ],
    },
  ],
  'conditions': [
    ['target_arch=="x64"', {
      'targets': [
        {
          'target_name': 'rapm_avx2',
          'type': 'static_library',
          'sources': ['<!@(<(rapm_ls) native/kernels _avx2.cpp)'],
          'cflags': ['-mavx2', '-mfma'],
          'xcode_settings': {'OTHER_CPLUSPLUSFLAGS': ['$(inherited)', '-mavx2', '-mfma']},
          'msvs_settings': {'VCCLCompilerTool': {'AdditionalOptions': ['/arch:AVX2']}},
        },
        {
          'target_name': 'rapm_avx512',
          'type': 'static_library',
          'sources': ['<!@(<(rapm_ls) native/kernels _avx512.cpp)'],
          'cflags': [
            '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq',
            '-Wno-uninitialized', '-Wno-maybe-uninitialized',
          ],
          'xcode_settings': {
            'OTHER_CPLUSPLUSFLAGS': [
              '$(inherited)', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq',
              '-Wno-uninitialized',
            ],
          },
          'msvs_settings': {'VCCLCompilerTool': {'AdditionalOptions': ['/arch:AVX512']}},
        },
        {
          'target_name': 'rapm_avx512vnni',
          'type': 'static_library',
          'sources': ['<!@(<(rapm_ls) native/kernels _avx512vnni.cpp)'],
          'cflags': [
            '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512vnni',
            '-Wno-uninitialized', '-Wno-maybe-uninitialized',
          ],
          'xcode_settings': {
            'OTHER_CPLUSPLUSFLAGS': [
              '$(inherited)', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512vnni',
              '-Wno-uninitialized',
            ],
          },
          'msvs_settings': {'VCCLCompilerTool': {'AdditionalOptions': ['/arch:AVX512']}},
        },
        {
          'target_name': 'rapm_avx512bf16',
          'type': 'static_library',
          'sources': ['<!@(<(rapm_ls) native/kernels _avx512bf16.cpp)'],
          'cflags': [
            '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512bf16',
            '-Wno-uninitialized', '-Wno-maybe-uninitialized',
          ],
          'xcode_settings': {
            'OTHER_CPLUSPLUSFLAGS': [
              '$(inherited)', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512bf16',
              '-Wno-uninitialized',
            ],
          },
          'msvs_settings': {'VCCLCompilerTool': {'AdditionalOptions': ['/arch:AVX512']}},
        },
      ],
    }],
    ['target_arch=="arm64"', {
      'targets': [
        {
          # NEON is baseline on arm64: no extra flags, a library only for symmetry.
          'target_name': 'rapm_neon',
          'type': 'static_library',
          'sources': ['<!@(<(rapm_ls) native/kernels _neon.cpp)'],
        },
      ],
    }],
  ],
}
