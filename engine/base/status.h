// Status and StatusOr: errors are values until cmd/ turns them into an exit code.
// A message should let the user act: name the file, line, tensor or field, and what was
// expected (LevelDB's Status, with a code that maps onto the CLI's exit codes).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace dsv3 {

enum class StatusCode {
  kOk = 0,
  kInvalidInput = 2,  // bad file, bad flag, bad config: the user's input is wrong (exit 2)
  kRuntime = 1,       // the input was fine but running failed: I/O, out of memory (exit 1)
  kNotFound = 4,      // a file or tensor that should exist does not (exit 2 at the CLI)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string msg) { return Status(StatusCode::kInvalidInput, std::move(msg)); }
  static Status Runtime(std::string msg) { return Status(StatusCode::kRuntime, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const { return ok() ? "OK" : message_; }

  // Prefixes context ("model.safetensors: ") so low-level errors name their file.
  Status WithPrefix(const std::string& prefix) const {
    if (ok()) return *this;
    return Status(code_, prefix + message_);
  }

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s) : status_(std::move(s)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T value) : value_(std::move(value)) {}                        // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace dsv3

#define DSV3_CONCAT_INNER(a, b) a##b
#define DSV3_CONCAT(a, b) DSV3_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::dsv3::Status _st = (expr);              \
    if (!_st.ok()) return _st;                \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(DSV3_CONCAT(_so_, __LINE__), lhs, expr)
