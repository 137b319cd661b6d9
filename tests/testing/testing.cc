#include "tests/testing/testing.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>

namespace dsv3::testing {

std::string SharedDir() {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  std::string dir = env ? env : DSV3_SHARED_DIR;
  struct stat st;
  if (::stat((dir + "/models").c_str(), &st) == 0) return dir;
  return "";
}

std::string SourceDir() { return DSV3_SOURCE_DIR; }
std::string Dsv3Binary() { return DSV3_BINARY; }

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/dsv3_test_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data())) path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

namespace {
std::string ReadAll(int fd) {
  std::string s;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, n);
  return s;
}
}  // namespace

RunResult RunDsv3(const std::vector<std::string>& args) {
  RunResult r;
  TempDir dir;
  std::string out_path = dir.Join("stdout"), err_path = dir.Join("stderr");
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> argv;
    std::string bin = Dsv3Binary();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  int fo = ::open(out_path.c_str(), O_RDONLY), fe = ::open(err_path.c_str(), O_RDONLY);
  r.out = ReadAll(fo);
  r.err = ReadAll(fe);
  ::close(fo);
  ::close(fe);
  return r;
}

std::vector<float> RandomNormal(int64_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

::testing::AssertionResult AllClose(const float* a, const float* b, int64_t n, double atol, const std::string& what) {
  double worst = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < n; ++i) {
    double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) d = INFINITY;
    if (d > worst || worst_i < 0) {
      worst = d;
      worst_i = i;
    }
  }
  if (worst <= atol) return ::testing::AssertionSuccess() << what << " max |diff| " << worst;
  std::ostringstream os;
  os << what << ": max |diff| " << worst << " > " << atol << " at index " << worst_i << " (" << a[worst_i]
     << " vs " << b[worst_i] << ")";
  return ::testing::AssertionFailure() << os.str();
}

NearPositions CountNearPositions(const float* got, const float* want, size_t positions, size_t vocab, double tol) {
  NearPositions r;
  for (size_t p = 0; p < positions; ++p) {
    double worst = 0;
    for (size_t v = 0; v < vocab; ++v)
      worst = std::max(worst, std::fabs(static_cast<double>(got[p * vocab + v]) - want[p * vocab + v]));
    if (worst > tol) continue;
    ++r.near;
    r.typical = std::max(r.typical, worst);
  }
  return r;
}

}  // namespace dsv3::testing
