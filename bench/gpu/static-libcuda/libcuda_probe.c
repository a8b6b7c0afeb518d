/* Does libcuda work when dlopened from a statically linked glibc program?
   Built twice from this file (-static and dynamic) by run.sh; see README.md. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
typedef int CUresult; typedef int CUdevice; typedef void *CUcontext; typedef unsigned long long CUdeviceptr;
typedef void *CUmodule; typedef void *CUfunction;
static const char *ptx =
".version 7.0\n.target sm_50\n.address_size 64\n"
".visible .entry add1(.param .u64 p, .param .u32 n){\n"
".reg .pred %p; .reg .b32 %r<6>; .reg .b64 %rd<5>; .reg .f32 %f<3>;\n"
"ld.param.u64 %rd1,[p]; ld.param.u32 %r1,[n];\n"
"mov.u32 %r2,%ctaid.x; mov.u32 %r3,%ntid.x; mov.u32 %r4,%tid.x; mad.lo.s32 %r5,%r2,%r3,%r4;\n"
"setp.ge.u32 %p,%r5,%r1; @%p bra DONE;\n"
"cvta.to.global.u64 %rd2,%rd1; mul.wide.u32 %rd3,%r5,4; add.s64 %rd4,%rd2,%rd3;\n"
"ld.global.f32 %f1,[%rd4]; add.f32 %f2,%f1,0f3F800000; st.global.f32 [%rd4],%f2;\n"
"DONE: ret;}\n";
#define L(name) name##_t name = (name##_t)dlsym(h, #name); if(!name){printf("no %s\n", #name); return 1;}
typedef CUresult (*cuInit_t)(unsigned); typedef CUresult (*cuDeviceGetCount_t)(int*); typedef CUresult (*cuDeviceGet_t)(CUdevice*,int);
typedef CUresult (*cuCtxCreate_v2_t)(CUcontext*,unsigned,CUdevice); typedef CUresult (*cuMemAlloc_v2_t)(CUdeviceptr*,size_t);
typedef CUresult (*cuMemcpyHtoD_v2_t)(CUdeviceptr,const void*,size_t); typedef CUresult (*cuMemcpyDtoH_v2_t)(void*,CUdeviceptr,size_t);
typedef CUresult (*cuModuleLoadData_t)(CUmodule*,const void*); typedef CUresult (*cuModuleGetFunction_t)(CUfunction*,CUmodule,const char*);
typedef CUresult (*cuLaunchKernel_t)(CUfunction,unsigned,unsigned,unsigned,unsigned,unsigned,unsigned,unsigned,void*,void**,void**);
typedef CUresult (*cuCtxSynchronize_t)(void); typedef CUresult (*cuCtxDestroy_v2_t)(CUcontext); typedef CUresult (*cuDriverGetVersion_t)(int*);
static void *spin(void *a){ volatile double x=0; for(int i=0;i<10000000;i++) x+=i; return a; }
#define C(x) do{ CUresult r=(x); if(r){ printf("%s -> %d\n", #x, r); return 1;} }while(0)
int main(void){
  setvbuf(stdout,0,_IONBF,0); printf("dlopen...\n"); void *h = dlopen("libcuda.so.1", RTLD_NOW|RTLD_LOCAL); printf("loaded\n");
  if(!h){ printf("dlopen: %s\n", dlerror()); return 1; }
  L(cuInit) L(cuDeviceGetCount) L(cuDeviceGet) L(cuCtxCreate_v2) L(cuMemAlloc_v2) L(cuMemcpyHtoD_v2) L(cuMemcpyDtoH_v2)
  L(cuModuleLoadData) L(cuModuleGetFunction) L(cuLaunchKernel) L(cuCtxSynchronize) L(cuCtxDestroy_v2) L(cuDriverGetVersion)
  pthread_t t; pthread_create(&t, 0, spin, 0);
  int v=0, n=0; printf("cuInit...\n"); C(cuInit(0)); printf("init ok\n"); C(cuDriverGetVersion(&v)); C(cuDeviceGetCount(&n));
  CUdevice d; C(cuDeviceGet(&d,0)); CUcontext ctx; C(cuCtxCreate_v2(&ctx,0,d));
  enum { N = 1<<20 }; static float a[N]; for(int i=0;i<N;i++) a[i]=i;
  CUdeviceptr p; C(cuMemAlloc_v2(&p, sizeof a)); C(cuMemcpyHtoD_v2(p, a, sizeof a));
  CUmodule m; C(cuModuleLoadData(&m, ptx)); CUfunction f; C(cuModuleGetFunction(&f, m, "add1"));
  unsigned nn=N; void *args[] = { &p, &nn };
  for(int k=0;k<100;k++) C(cuLaunchKernel(f, N/256,1,1, 256,1,1, 0, 0, args, 0));
  C(cuCtxSynchronize()); C(cuMemcpyDtoH_v2(a, p, sizeof a));
  int bad=0; for(int i=0;i<N;i++) if(a[i]!=(float)i+100) bad++;
  pthread_join(t,0); C(cuCtxDestroy_v2(ctx));
  printf("driver %d, %d devices, 100 launches on 1M floats, %d wrong\n", v, n, bad);
  return bad!=0;
}
