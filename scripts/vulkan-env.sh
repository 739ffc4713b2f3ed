# shellcheck shell=bash
# The Vulkan build environment for `scripts/build --features vulkan` and scripts/test-gpu (sourced, not run).
#
# ggml-vulkan needs glslc, the SPIR-V headers and Vulkan headers newer than Debian 12's libvulkan-dev 1.3.239
# (it uses vk::LayerSettingEXT). On Debian 12 this installs glslc, libvulkan1 and mesa-vulkan-drivers (the lavapipe
# CPU device) with apt, and takes the headers only from Debian 13's libvulkan-dev and spirv-headers packages
# (`apt-get download` from a private trixie source list, unpacked with `dpkg -x` into target/vulkan-sdk; the
# system's libvulkan.so.1 stays). Elsewhere, with a Vulkan SDK installed (VULKAN_SDK set) or recent enough
# distribution packages, it changes nothing.

medgemma_vulkan_env() {
    local root="$MEDGEMMA_ROOT"
    local sdk="$root/target/vulkan-sdk"
    if [ -n "${VULKAN_SDK:-}" ]; then
        return 0
    fi
    local missing=()
    command -v glslc >/dev/null 2>&1 || missing+=(glslc)
    ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || missing+=(libvulkan1)
    [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ -e /usr/share/vulkan/icd.d/lvp_icd.json ] || missing+=(mesa-vulkan-drivers)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "medgemma: installing the Vulkan build prerequisites: ${missing[*]}" >&2
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || {
                echo "medgemma: apt-get install ${missing[*]} failed; install them and retry" >&2
                return 1
            }
        else
            echo "medgemma: the Vulkan build needs: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
            return 1
        fi
    fi
    if [ ! -f "$sdk/include/vulkan/vulkan.hpp" ] || ! find "$sdk/usr" -name 'SPIRV-HeadersConfig.cmake' 2>/dev/null | grep -q .; then
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "medgemma: the Vulkan build needs Vulkan headers 1.3.275 or newer and spirv-headers; install the" >&2
            echo "  Vulkan SDK (https://vulkan.lunarg.com) and set VULKAN_SDK" >&2
            return 1
        fi
        echo "medgemma: fetching Vulkan 1.4 and SPIR-V headers (Debian 13 packages, headers only) into $sdk" >&2
        local apt_dir="$sdk/apt"
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/debs" "$sdk/include" "$sdk/lib"
        echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
        local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
                    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/debs"
                    -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1")
        apt-get "${opts[@]}" update -qq >&2 || { echo "medgemma: cannot read Debian 13's package lists" >&2; return 1; }
        (cd "$apt_dir/debs" && apt-get "${opts[@]}" download libvulkan-dev spirv-headers >&2) || {
            echo "medgemma: cannot download libvulkan-dev and spirv-headers from Debian 13" >&2
            return 1
        }
        local deb
        for deb in "$apt_dir"/debs/*.deb; do
            dpkg -x "$deb" "$sdk"
        done
        rm -rf "$sdk/include/vulkan" "$sdk/include/vk_video"
        cp -r "$sdk/usr/include/vulkan" "$sdk/include/"
        [ -d "$sdk/usr/include/vk_video" ] && cp -r "$sdk/usr/include/vk_video" "$sdk/include/"
    fi
    local lib
    lib="$(ldconfig -p | sed -n 's/.*libvulkan\.so\.1 (libc6,x86-64) => //p' | head -1)"
    ln -sf "$lib" "$sdk/lib/libvulkan.so"
    export VULKAN_SDK="$sdk"
    export CMAKE_PREFIX_PATH="$sdk/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
}
