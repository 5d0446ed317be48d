// A program that commits one memory or undefined-behaviour error, named by its argument, so that
// the sanitized build can show that AddressSanitizer and UBSan are compiled in and stop the
// program (ctest expects the sanitizer's report and fails on "SURVIVED").
#include <cstdio>
#include <cstring>
#include <limits>

namespace {

// Opaque to the optimizer, so that the error happens at run time.
// (The size is opaque too, or UBSan's object-size check fires before ASan.)
volatile int g_index = 8;
volatile int g_size = 8;
volatile int g_big = std::numeric_limits<int>::max();

int HeapBufferOverflow() {
  int* p = new int[g_size];
  std::memset(p, 0, g_size * sizeof(int));
  const int v = p[g_index];
  delete[] p;
  return v;
}

int UseAfterFree() {
  int* p = new int[g_size];
  p[0] = 1;
  delete[] p;
  return p[g_index - 8];
}

// Unreachable at exit: LeakSanitizer must report it.
int* volatile g_sink = nullptr;
int Leak() {
  g_sink = new int[g_size];
  g_sink[0] = 1;
  const int v = g_sink[0];
  g_sink = nullptr;
  return v;
}

int SignedIntegerOverflow() {
  const int big = g_big;
  return big + g_index;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: %s heap-buffer-overflow|use-after-free|leak|signed-integer-overflow\n",
                 argv[0]);
    return 2;
  }
  int v = 0;
  if (std::strcmp(argv[1], "heap-buffer-overflow") == 0) {
    v = HeapBufferOverflow();
  } else if (std::strcmp(argv[1], "use-after-free") == 0) {
    v = UseAfterFree();
  } else if (std::strcmp(argv[1], "leak") == 0) {
    v = Leak();
    std::printf("leaked %d ints; LeakSanitizer reports at exit\n", v);
    return 0;
  } else if (std::strcmp(argv[1], "signed-integer-overflow") == 0) {
    v = SignedIntegerOverflow();
  } else {
    std::fprintf(stderr, "unknown error kind %s\n", argv[1]);
    return 2;
  }
  std::printf("SURVIVED %s (value %d): the sanitizer is not active\n", argv[1], v);
  return 0;
}
