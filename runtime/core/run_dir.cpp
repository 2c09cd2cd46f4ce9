#include "core/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>

#include "core/error.h"
#include "core/fs.h"

namespace cai {
namespace {

namespace fs = std::filesystem;

std::map<std::string, int>& held_locks() {
    static std::map<std::string, int> locks;  // canonical dir -> open fd (never closed: held until exit)
    return locks;
}

std::vector<std::string>& stored_command_line() {
    static std::vector<std::string> argv;
    return argv;
}

bool process_alive(long pid) {
    if (pid <= 0) return false;
    return ::kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

// Two 64-bit FNV-1a lanes with different offsets and a final mix.
struct hasher {
    uint64_t a = 14695981039346656037ull, b = 0x9e3779b97f4a7c15ull;
    void add(const void* data, size_t n) {
        const unsigned char* p = static_cast<const unsigned char*>(data);
        for (size_t i = 0; i < n; ++i) {
            a = (a ^ p[i]) * 1099511628211ull;
            b = (b ^ p[i]) * 0x100000001b3ull ^ (b >> 29);
        }
    }
    void add(const std::string& s) {
        uint64_t n = s.size();
        add(&n, sizeof n);
        add(s.data(), s.size());
    }
    std::string hex() const {
        auto mix = [](uint64_t x) {
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdull;
            x ^= x >> 33;
            x *= 0xc4ceb9fe1a85ec53ull;
            x ^= x >> 33;
            return x;
        };
        char buf[33];
        std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)mix(a), (unsigned long long)mix(b));
        return buf;
    }
};

void add_file(hasher& h, const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) fail(path, ": cannot read: ", std::strerror(errno));
    const uint64_t size = (uint64_t)st.st_size;
    h.add(&size, sizeof size);
    if (size <= (64ull << 20)) {
        h.add(read_file(path));
        return;
    }
    // Big files (weights): 64 blocks of 64 KiB spread evenly, the first and
    // the last included. Training changes every tensor, so a changed file
    // changes its samples; a copy of the file keeps its fingerprint.
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path, ": cannot read: ", std::strerror(errno));
    const uint64_t block = 64 << 10, blocks = 64;
    std::string buffer(block, '\0');
    for (uint64_t i = 0; i < blocks; ++i) {
        const uint64_t offset = (size - block) / (blocks - 1) * i;
        if (std::fseek(f, (long)offset, SEEK_SET) != 0 || std::fread(&buffer[0], 1, block, f) != block) {
            std::fclose(f);
            fail(path, ": read error");
        }
        h.add(buffer);
    }
    std::fclose(f);
}

const std::regex& temporary_name() {
    static const std::regex re("^(.+)\\.(tmp|old)\\.([0-9]+)$");
    return re;
}

}  // namespace

void lock_run_dir(const std::string& dir) {
    make_directories(dir);
    std::error_code ec;
    const std::string key = fs::canonical(dir, ec).string();
    if (held_locks().count(key)) return;
    const std::string path = path_join(dir, ".lock");
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, ": cannot open the run lock: ", std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int saved = errno;
        std::string holder;
        char buf[64] = {0};
        ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        if (n > 0) holder = std::string(buf, (size_t)n);
        holder.erase(std::remove(holder.begin(), holder.end(), '\n'), holder.end());
        if (saved == EWOULDBLOCK)
            fail(dir, ": another run is using this directory (pid ", holder.empty() ? "unknown" : holder,
                 ", lock ", path, "); wait for it to finish, stop it, or use another out directory");
        fail(path, ": cannot take the run lock: ", std::strerror(saved));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != (ssize_t)pid.size())
        fail(path, ": cannot write the run lock: ", std::strerror(errno));
    held_locks()[key] = fd;
}

std::vector<std::string> clean_temporaries(const std::string& dir, bool recursive, bool only_dead) {
    std::vector<std::string> done;
    if (!is_directory(dir)) return done;
    std::vector<fs::path> found;
    std::error_code ec;
    if (recursive) {
        for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
             it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (ec) break;
            std::smatch m;
            const std::string name = it->path().filename().string();
            if (std::regex_match(name, m, temporary_name())) {
                found.push_back(it->path());
                if (it->is_directory(ec)) it.disable_recursion_pending();
            }
        }
    } else {
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (std::regex_match(name, temporary_name())) found.push_back(entry.path());
        }
    }
    std::sort(found.begin(), found.end());
    const long self = (long)::getpid();
    for (const auto& p : found) {
        std::smatch m;
        const std::string name = p.filename().string();
        std::regex_match(name, m, temporary_name());
        const long pid = std::stol(m[3].str());
        if (pid == self || (only_dead && process_alive(pid))) continue;
        const fs::path original = p.parent_path() / m[1].str();
        if (m[2].str() == "old" && !fs::exists(original, ec)) {
            // Killed between moving the old copy aside and moving the new one in.
            fs::rename(p, original, ec);
            if (!ec) {
                done.push_back("restored " + original.string());
                continue;
            }
        }
        fs::remove_all(p, ec);
        if (!ec) done.push_back("removed " + p.string());
    }
    return done;
}

std::string path_fingerprint(const std::string& path) {
    hasher h;
    if (!file_exists(path)) fail(path, ": no such file or directory");
    if (!is_directory(path)) {
        add_file(h, path);
        return h.hex();
    }
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name[0] == '.' || std::regex_match(name, temporary_name())) continue;
        if (entry.is_regular_file(ec)) names.push_back(name);
    }
    if (ec) fail(path, ": cannot list: ", ec.message());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        h.add(name);
        add_file(h, path_join(path, name));
    }
    return h.hex();
}

std::string hash_hex(const std::string& text) {
    hasher h;
    h.add(text);
    return h.hex();
}

int64_t peak_rss_bytes() {
    struct rusage usage {};
    if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return (int64_t)usage.ru_maxrss * 1024;
}

void set_command_line(const std::vector<std::string>& argv) { stored_command_line() = argv; }

const std::vector<std::string>& command_line() { return stored_command_line(); }

}  // namespace cai
