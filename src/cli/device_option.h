// --device and --dtype of the inference commands (generate, bench, forward), and the GPU's decode
// engine that generate and bench use there.
//
// --device takes what `sambalm train --device` takes (ops/device.h parse_device): cpu, cuda, cuda:N or
// auto (the first GPU when this build has the CUDA backend and one is visible, else the CPU). --dtype is
// the GPU's compute precision (parse_precision: bf16, fp32, or auto = bf16 on a GPU, fp32 on the CPU);
// the CPU computes in fp32 only. The CPU's packed weight formats are a separate option, --weights-dtype.
//
// Some options run on the CPU only for now (--weights-dtype, SambaY models, bench --bandwidth): with
// --device auto they choose the CPU, with --device cuda they are an error naming them.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "infer/decode_model.h"
#include "infer/generator.h"
#include "infer/state_file.h"
#include "io/model_dir.h"
#include "ops/device.h"

namespace sambalm::cli {

// Adds --device and --dtype (both default auto).
void add_device_options(CLI::App* sub, std::string& device, std::string& dtype);

// Adds --cuda-graphs on|off (default on): the GPU's decode step replayed as a captured CUDA graph per
// batch size, or launched kernel by kernel. No effect on the CPU.
void add_graphs_option(CLI::App* sub, std::string& graphs);

// An option (or a model) given that runs on the CPU only; `why` completes "... does not run on the GPU
// yet: <why>".
struct CpuOnly {
  std::string what;  // e.g. "--weights-dtype bf16", "SambaY model 'phi4miniflash_d32'"
  std::string why;   // e.g. "use --dtype for the GPU's precision"
};

struct InferDevice {
  DeviceSpec spec;
  Precision precision = Precision::FP32;
  bool cuda() const { return spec.device == Device::CUDA; }
};

// --device and --dtype as given, and what was given that runs on the CPU only: auto then picks the
// CPU; an explicit cuda is an Error naming the first of them. --dtype bf16 on the CPU is an Error
// (naming `dtype_option`, the name the user gave).
// Nothing is opened here (Backend does that).
InferDevice resolve_infer_device(const std::string& device, const std::string& dtype,
                                 const std::vector<CpuOnly>& cpu_only, const std::string& dtype_option = "--dtype");

// The model's fp32 host parameters uploaded to a GPU (and converted to bf16 for --dtype bf16) and a
// DeviceDecodeModel over them, seen as a DecodeEngine. `lm` must outlive it (its host parameters
// make the state files' target), and every DecodeState of engine() must go before it.
class GpuDecoder {
 public:
  GpuDecoder(const InferDevice& where, LoadedModel& lm, const DecodeOptions& opt);
  ~GpuDecoder();
  GpuDecoder(const GpuDecoder&) = delete;
  GpuDecoder& operator=(const GpuDecoder&) = delete;

  DecodeEngine& engine() { return *engine_; }
  // "cuda:0 (NVIDIA H100 ...), bf16".
  std::string describe() const;
  Precision precision() const { return precision_; }
  // What a state file of this model must match (the file holds fp32 whatever the device's dtype).
  const DecodeStateTarget& state_target() const { return target_; }
  // Bytes of the parameters in device memory (working copy and master).
  int64_t param_bytes() const { return param_bytes_; }

 private:
  struct Impl;
  Backend backend_;
  Precision precision_;
  std::unique_ptr<Impl> impl_;
  DecodeEngine* engine_ = nullptr;
  DecodeStateTarget target_;
  int64_t param_bytes_ = 0;
};

}  // namespace sambalm::cli
