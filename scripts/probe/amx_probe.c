/* Exits 0 when AMX tile instructions run on this CPU, 1 when they fault (SIGILL), 2 when the kernel refuses AMX.
   scripts/env.sh compiles and runs it to decide whether a -march=native build of llama.cpp must leave AMX out. */
#include <immintrin.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static sigjmp_buf env;
static void on_sigill(int s) { (void)s; siglongjmp(env, 1); }
int main(void) {
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 2;
  signal(SIGILL, on_sigill);
  if (sigsetjmp(env, 1)) return 1;
  unsigned char cfg[64]; memset(cfg, 0, sizeof cfg);
  cfg[0] = 1; cfg[16] = 64; cfg[48] = 16;
  _tile_loadconfig(cfg); _tile_zero(0); _tile_release();
  return 0;
}
