#include "core/fs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
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

void write_file_atomic(const std::string& path, const std::string& content) {
    std::string dir = path_dirname(path);
    if (dir != ".") make_directories(dir);
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, ": cannot write: ", std::strerror(errno));
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            fail(path, ": write failed: ", std::strerror(saved));
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    const bool synced = ::fsync(fd) == 0;
    int saved = errno;
    const bool closed = ::close(fd) == 0;
    if (synced && !closed) saved = errno;
    if (!synced || !closed) {
        ::unlink(tmp.c_str());
        fail(path, ": write failed: ", std::strerror(saved));
    }
    rename_into_place(tmp, path);
}

void rename_into_place(const std::string& from, const std::string& to) {
    if (std::rename(from.c_str(), to.c_str()) != 0) {
        int saved = errno;
        fail(to, ": cannot rename ", from, " into place: ", std::strerror(saved));
    }
}

}  // namespace cai
