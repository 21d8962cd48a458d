#include "core/context.h"

#include <fmt/format.h>

namespace sambalm {

std::string Context::name() const {
  return device == Device::CPU ? std::string("cpu") : fmt::format("cuda:{}", device_index);
}

const Context& cpu_context() {
  static const Context ctx{};
  return ctx;
}

}  // namespace sambalm
