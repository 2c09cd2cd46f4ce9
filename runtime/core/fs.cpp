#include "core/fs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace cai {

std::string read_file(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) fail(path, ": is a directory, expected a file");
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path, ": cannot open: ", std::strerror(errno));
    std::string content;
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) content.append(buffer, n);
    bool bad = std::ferror(f);
    int saved = errno;
    std::fclose(f);
    if (bad) fail(path, ": read error: ", std::strerror(saved));
    return content;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_directories(const std::string& path) {
    if (path.empty() || is_directory(path)) return;
    std::string parent = path_dirname(path);
    if (parent != path && !parent.empty() && parent != ".") make_directories(parent);
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
        fail(path, ": cannot create directory: ", std::strerror(errno));
}

std::string path_join(const std::string& a, const std::string& b) {
    if (a.empty() || (!b.empty() && b[0] == '/')) return b;
    if (a.back() == '/') return a + b;
    return a + "/" + b;
}

std::string path_dirname(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

bool write_all(int fd, const std::string& content) {
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    return true;
}

void write_file_atomic(const std::string& path, const std::string& content) {
    if (path.empty()) fail("write: the file path is empty");
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) fail(path, ": is a directory, expected a file");
        // A device or a pipe (/dev/null, /dev/stdout, a FIFO) is written in
        // place: renaming a file over it would replace the device itself.
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) fail(path, ": cannot write: ", std::strerror(errno));
        const bool written = write_all(fd, content);
        const int write_errno = errno;
        const bool closed = ::close(fd) == 0;
        if (!written || !closed) fail(path, ": write failed: ", std::strerror(written ? errno : write_errno));
        return;
    }
    std::string dir = path_dirname(path);
    if (dir != ".") make_directories(dir);
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, ": cannot write: ", std::strerror(errno));
    if (!write_all(fd, content)) {
        int saved = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        fail(path, ": write failed: ", std::strerror(saved));
    }
    const bool synced = ::fsync(fd) == 0;
    int saved = errno;
    const bool closed = ::close(fd) == 0;
    if (synced && !closed) saved = errno;
    if (!synced || !closed) {
        ::unlink(tmp.c_str());
        fail(path, ": write failed: ", std::strerror(saved));
    }
    try {
        rename_into_place(tmp, path);
    } catch (const error&) {
        ::unlink(tmp.c_str());
        throw;
    }
}

void rename_into_place(const std::string& from, const std::string& to) {
    if (std::rename(from.c_str(), to.c_str()) != 0) {
        int saved = errno;
        fail(to, ": cannot rename ", from, " into place: ", std::strerror(saved));
    }
}

namespace {

// Holds an open descriptor and its flock; both are released on scope exit.
struct locked_fd {
    int fd = -1;
    ~locked_fd() {
        if (fd >= 0) ::close(fd);  // closing drops the flock
    }
};

void lock_fd(int fd, int how, const std::string& path) {
    while (::flock(fd, how) != 0) {
        if (errno == EINTR) continue;
        fail(path, ": cannot lock: ", std::strerror(errno));
    }
}

}  // namespace

void append_line_locked(const std::string& path, const std::string& line) {
    if (line.find('\n') != std::string::npos) fail(path, ": a line to append must not contain a newline");
    locked_fd f;
    f.fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f.fd < 0) fail(path, ": cannot open for appending: ", std::strerror(errno));
    lock_fd(f.fd, LOCK_EX, path);
    struct stat st;
    if (::fstat(f.fd, &st) != 0) fail(path, ": cannot stat: ", std::strerror(errno));
    // A writer that died mid-line left a torn tail: cut back to the last '\n'.
    off_t size = st.st_size;
    if (size > 0) {
        char last = 0;
        if (::pread(f.fd, &last, 1, size - 1) != 1) fail(path, ": cannot read: ", std::strerror(errno));
        if (last != '\n') {
            off_t keep = size - 1;
            char c = 0;
            while (keep > 0 && ::pread(f.fd, &c, 1, keep - 1) == 1 && c != '\n') --keep;
            if (::ftruncate(f.fd, keep) != 0) fail(path, ": cannot cut a torn last line: ", std::strerror(errno));
        }
    }
    if (!write_all(f.fd, line + "\n")) fail(path, ": append failed: ", std::strerror(errno));
    if (::fsync(f.fd) != 0) fail(path, ": append failed: ", std::strerror(errno));
}

std::string read_file_locked(const std::string& path) {
    locked_fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
        if (errno == ENOENT) return "";
        fail(path, ": cannot open: ", std::strerror(errno));
    }
    lock_fd(f.fd, LOCK_SH, path);
    std::string content;
    char buffer[1 << 16];
    for (;;) {
        ssize_t n = ::read(f.fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(path, ": read error: ", std::strerror(errno));
        }
        if (n == 0) break;
        content.append(buffer, static_cast<size_t>(n));
    }
    return content;
}

}  // namespace cai
