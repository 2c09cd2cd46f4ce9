// cai._json: cai.json.encode/decode and cai.jsonl.read/write/append.
#include "lua/lua_json.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace cai {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

const char* const array_marker = "cai.json.array";
const char* const object_marker = "cai.json.object";
int null_sentinel_storage;
void* const null_sentinel = &null_sentinel_storage;
const int max_depth = static_cast<int>(json_max_depth);
// Registry table (weak keys): decoded object -> list of its keys in the
// order of the JSON text, for code that must print them as Python would
// (chat templates' tojson). Objects with fewer than two keys are not listed.
const char* const key_order_registry = "cai.json.key_order";

bool has_marker(lua_State* L, int index, const char* marker) {
    if (!lua_getmetatable(L, index)) return false;
    luaL_getmetatable(L, marker);
    bool same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

json convert(lua_State* L, int index, const std::string& path, int depth) {
    if (depth > max_depth) fail("json: nesting deeper than ", max_depth, " at ", path, " (a cycle?)");
    switch (lua_type(L, index)) {
    case LUA_TNIL:
        return nullptr;
    case LUA_TBOOLEAN:
        return static_cast<bool>(lua_toboolean(L, index));
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, index);
        if (!std::isfinite(v)) fail("json: cannot encode ", v, " at ", path, " (JSON has no NaN or infinity)");
        if (std::floor(v) == v && std::fabs(v) < 9007199254740992.0) return static_cast<int64_t>(v);
        return v;
    }
    case LUA_TSTRING: {
        size_t n;
        const char* s = lua_tolstring(L, index, &n);
        std::string value(s, n);
        if (!utf8_valid(value)) fail("json: string at ", path, " is not valid UTF-8");
        return value;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, index) == null_sentinel) return nullptr;
        break;
    case LUA_TTABLE: {
        if (index < 0) index = lua_gettop(L) + index + 1;
        size_t count = 0, string_keys = 0;
        double max_key = 0;
        bool integer_keys_only = true;
        lua_pushnil(L);
        while (lua_next(L, index) != 0) {
            lua_pop(L, 1);
            ++count;
            if (lua_type(L, -1) == LUA_TNUMBER) {
                double k = lua_tonumber(L, -1);
                if (k < 1 || std::floor(k) != k) integer_keys_only = false;
                else max_key = std::max(max_key, k);
            } else if (lua_type(L, -1) == LUA_TSTRING) {
                ++string_keys;
                integer_keys_only = false;
            } else {
                std::string type = luaL_typename(L, -1);
                lua_pop(L, 1);
                fail("json: table at ", path, " has a key of type ", type, " (only string keys or a 1..n list)");
            }
        }
        if (count == 0) return has_marker(L, index, object_marker) ? json::object() : json::array();
        if (integer_keys_only && max_key == static_cast<double>(count) && !has_marker(L, index, object_marker)) {
            json out = json::array();
            for (size_t i = 1; i <= count; ++i) {
                lua_rawgeti(L, index, static_cast<int>(i));
                out.push_back(convert(L, -1, path + "[" + std::to_string(i) + "]", depth + 1));
                lua_pop(L, 1);
            }
            return out;
        }
        if (string_keys != count)
            fail("json: table at ", path, " mixes string and number keys (or is a list with holes); ",
                 "use only string keys or a 1..n list");
        json out = json::object();
        lua_pushnil(L);
        while (lua_next(L, index) != 0) {
            std::string key = lua_tostring(L, -2);
            out[key] = convert(L, -1, path + "." + key, depth + 1);
            lua_pop(L, 1);
        }
        return out;
    }
    default:
        break;
    }
    fail("json: cannot encode a ", luaL_typename(L, index), " at ", path);
}

void push_marked_table(lua_State* L, int narr, int nrec, const char* marker) {
    lua_createtable(L, narr, nrec);
    luaL_getmetatable(L, marker);
    lua_setmetatable(L, -2);
}

// Pushes the registry's key-order table.
void push_key_order_table(lua_State* L) {
    lua_getfield(L, LUA_REGISTRYINDEX, key_order_registry);  // [order?]
    if (lua_istable(L, -1)) return;
    lua_pop(L, 1);
    lua_newtable(L);  // [order]
    lua_createtable(L, 0, 1);  // [order, mt]
    lua_pushstring(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);  // [order]
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, key_order_registry);  // [order]
}

// Like push_json, and records the key order of objects (order_index: the
// key-order table's stack index).
void push_ordered(lua_State* L, const ordered_json& value, int order_index) {
    switch (value.type()) {
    case ordered_json::value_t::array: {
        push_marked_table(L, static_cast<int>(value.size()), 0, array_marker);
        int i = 0;
        for (const auto& item : value) {
            push_ordered(L, item, order_index);
            lua_rawseti(L, -2, ++i);
        }
        break;
    }
    case ordered_json::value_t::object: {
        push_marked_table(L, 0, static_cast<int>(value.size()), object_marker);  // [.., obj]
        for (const auto& [key, item] : value.items()) {
            lua_pushlstring(L, key.data(), key.size());
            push_ordered(L, item, order_index);
            lua_rawset(L, -3);
        }
        if (value.size() >= 2) {
            lua_pushvalue(L, -1);  // [.., obj, obj]
            lua_createtable(L, static_cast<int>(value.size()), 0);  // [.., obj, obj, keys]
            int i = 0;
            for (const auto& [key, item] : value.items()) {
                lua_pushlstring(L, key.data(), key.size());
                lua_rawseti(L, -2, ++i);
            }
            lua_rawset(L, order_index);  // [.., obj]
        }
        break;
    }
    case ordered_json::value_t::null:
        lua_pushlightuserdata(L, null_sentinel);
        break;
    case ordered_json::value_t::boolean:
        lua_pushboolean(L, value.get<bool>());
        break;
    case ordered_json::value_t::number_integer:
        lua_pushnumber(L, static_cast<double>(value.get<int64_t>()));
        break;
    case ordered_json::value_t::number_unsigned:
        lua_pushnumber(L, static_cast<double>(value.get<uint64_t>()));
        break;
    case ordered_json::value_t::number_float:
        lua_pushnumber(L, value.get<double>());
        break;
    case ordered_json::value_t::string: {
        const std::string& text = value.get_ref<const std::string&>();
        lua_pushlstring(L, text.data(), text.size());
        break;
    }
    default:
        lua_pushnil(L);
        break;
    }
}

ordered_json parse_ordered_or_fail(const std::string& text, const std::string& where) {
    const std::string bad = json_precheck(text);
    if (!bad.empty()) fail(where, "invalid JSON: ", bad);
    try {
        return ordered_json::parse(text);
    } catch (const ordered_json::exception& e) {
        fail(where, "invalid JSON: ", json_error_text(e.what()));
    }
}

json parse_or_fail(const std::string& text, const std::string& where) {
    const std::string bad = json_precheck(text);
    if (!bad.empty()) fail(where, "invalid JSON: ", bad);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        fail(where, "invalid JSON: ", json_error_text(e.what()));
    }
}

std::string encode_line(lua_State* L, int index) {
    return lua_to_json(L, index).dump(-1, ' ', false, json::error_handler_t::strict);
}

// --- Lua functions -------------------------------------------------------

// cai.json.encode(value, { indent = n })
int l_json_encode(lua_State* L) {
    return lua_guarded(L, [&] {
        check_option_keys(L, 2, "cai.json.encode", {"indent"});
        long long indent = opt_integer(L, 2, "indent", -1, "cai.json.encode");
        std::string text = lua_to_json(L, 1).dump(static_cast<int>(indent));
        lua_pushlstring(L, text.data(), text.size());
        return 1;
    });
}

// cai.json.decode(text)
int l_json_decode(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string text = arg_string(L, 1, "cai.json.decode", "text");
        ordered_json value = parse_ordered_or_fail(text, "cai.json.decode: ");
        push_key_order_table(L);  // [.., order]
        push_ordered(L, value, lua_gettop(L));  // [.., order, value]
        return 1;
    });
}

// cai.jsonl.read(path) -> list of records
int l_jsonl_read(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = arg_string(L, 1, "cai.jsonl.read", "path");
        std::string content = read_file(path);
        if (content.size() >= 3 && content.compare(0, 3, "\xEF\xBB\xBF") == 0) content.erase(0, 3);
        push_key_order_table(L);  // [order]
        int order_index = lua_gettop(L);
        lua_newtable(L);  // [order, records]
        int count = 0;
        size_t line_no = 0, start = 0;
        while (start < content.size()) {
            size_t end = content.find('\n', start);
            if (end == std::string::npos) end = content.size();
            ++line_no;
            std::string line = content.substr(start, end - start);
            start = end + 1;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.find_first_not_of(" \t") == std::string::npos) continue;
            ordered_json record = parse_ordered_or_fail(line, path + ":" + std::to_string(line_no) + ": ");
            push_ordered(L, record, order_index);
            lua_rawseti(L, -2, ++count);
        }
        return 1;
    });
}

// cai.jsonl.write(path, records): all or nothing (temp file + rename).
int l_jsonl_write(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = arg_string(L, 1, "cai.jsonl.write", "path");
        if (path.empty()) fail("cai.jsonl.write: the file path is empty");
        arg_table(L, 2, "cai.jsonl.write", "records");
        std::string content;
        int n = static_cast<int>(lua_objlen(L, 2));
        for (int i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);
            try {
                content += encode_line(L, -1);
            } catch (const std::exception& e) {
                lua_pop(L, 1);
                fail("cai.jsonl.write: ", path, ": record ", i, ": ", e.what());
            }
            content += '\n';
            lua_pop(L, 1);
        }
        write_file_atomic(path, content);
        return 0;
    });
}

// cai.jsonl.append(path, record): one complete line per call.
int l_jsonl_append(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = arg_string(L, 1, "cai.jsonl.append", "path");
        if (path.empty()) fail("cai.jsonl.append: the file path is empty");
        if (lua_isnoneornil(L, 2)) fail("cai.jsonl.append: argument #2 'record' is missing");
        std::string line = encode_line(L, 2) + "\n";
        std::string dir = path_dirname(path);
        if (dir != ".") make_directories(dir);
        int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) fail(path, ": cannot open for appending: ", std::strerror(errno));
        // One complete line or nothing: a write cut short (a full disk, a
        // file-size limit) is truncated back to where the line began.
        struct stat st;
        const off_t before = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
        const bool written = write_all(fd, line);
        const int saved = errno;
        if (!written && before >= 0 && ::ftruncate(fd, before) != 0) {
            const int truncate_errno = errno;
            ::close(fd);
            fail(path, ": append failed: ", std::strerror(saved), "; a partial line is left (cannot truncate: ",
                 std::strerror(truncate_errno), ")");
        }
        ::close(fd);
        if (!written) fail(path, ": append failed: ", std::strerror(saved), " (nothing appended)");
        return 0;
    });
}

// cai.json.array(t) / cai.json.object(t): mark a table's JSON kind.
int mark_table(lua_State* L, const char* marker) {
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_getmetatable(L, marker);
    lua_setmetatable(L, 1);
    lua_settop(L, 1);
    return 1;
}

// cai.json.key_order(t) -> the keys of a decoded object in the order of its
// JSON text, or nil (not decoded, or fewer than two keys).
int l_json_key_order(lua_State* L) {
    push_key_order_table(L);  // [.., order]
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);  // [.., order, keys?]
    return 1;
}

int l_json_array(lua_State* L) { return mark_table(L, array_marker); }
int l_json_object(lua_State* L) { return mark_table(L, object_marker); }

const luaL_Reg json_functions[] = {
    {"encode", l_json_encode}, {"decode", l_json_decode}, {"array", l_json_array},
    {"object", l_json_object}, {"jsonl_read", l_jsonl_read}, {"jsonl_write", l_jsonl_write},
    {"jsonl_append", l_jsonl_append}, {"key_order", l_json_key_order}, {nullptr, nullptr},
};

}  // namespace

json lua_to_json(lua_State* L, int index) {
    if (index < 0) index = lua_gettop(L) + index + 1;
    return convert(L, index, "$", 0);
}

void push_json(lua_State* L, const json& value) {
    // Two slots per level (table, key); the depth is bounded by json_max_depth.
    if (!lua_checkstack(L, 4)) fail("json: value nested too deeply for the Lua stack");
    switch (value.type()) {
    case json::value_t::null:
        lua_pushlightuserdata(L, null_sentinel);
        break;
    case json::value_t::boolean:
        lua_pushboolean(L, value.get<bool>());
        break;
    case json::value_t::number_integer:
        lua_pushnumber(L, static_cast<double>(value.get<int64_t>()));
        break;
    case json::value_t::number_unsigned:
        lua_pushnumber(L, static_cast<double>(value.get<uint64_t>()));
        break;
    case json::value_t::number_float:
        lua_pushnumber(L, value.get<double>());
        break;
    case json::value_t::string: {
        const std::string& s = value.get_ref<const std::string&>();
        lua_pushlstring(L, s.data(), s.size());
        break;
    }
    case json::value_t::array: {
        push_marked_table(L, static_cast<int>(value.size()), 0, array_marker);
        int i = 0;
        for (const auto& item : value) {
            push_json(L, item);
            lua_rawseti(L, -2, ++i);
        }
        break;
    }
    case json::value_t::object: {
        push_marked_table(L, 0, static_cast<int>(value.size()), object_marker);
        for (const auto& [key, item] : value.items()) {
            lua_pushlstring(L, key.data(), key.size());
            push_json(L, item);
            lua_rawset(L, -3);
        }
        break;
    }
    default:
        lua_pushnil(L);
        break;
    }
}

bool utf8_valid(const std::string& s) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t n = s.size(), i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

}  // namespace cai

extern "C" int luaopen_cai_json(lua_State* L) {
    luaL_newmetatable(L, cai::array_marker);
    lua_pop(L, 1);
    luaL_newmetatable(L, cai::object_marker);
    lua_pop(L, 1);
    luaL_newlib(L, cai::json_functions);  // [module]
    lua_pushlightuserdata(L, cai::null_sentinel);
    lua_setfield(L, -2, "null");
    return 1;
}
