# Shared compile settings for every target of the project.
add_library(tandem_settings INTERFACE)
target_compile_options(tandem_settings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
  -Wno-unused-parameter
  $<$<CONFIG:Release>:-O3>)

# Module boundaries, enforced by the include paths: a module's public headers
# (include/tandem/NAME) are visible only to it and to what links it, and its private
# headers (src/NAME/*.hpp, included as "NAME/x.hpp") only to itself and its tests
# (tandem_NAME_internals). Each is a folder in the build tree holding one link:
#   module_include/NAME/tandem/NAME -> include/tandem/NAME
#   module_private/NAME/NAME        -> src/NAME
# so an include of a module the target does not link fails to compile.
function(tandem_module_includes target name)
  set(pub ${CMAKE_BINARY_DIR}/module_include/${name})
  set(priv ${CMAKE_BINARY_DIR}/module_private/${name})
  file(MAKE_DIRECTORY ${pub}/tandem ${priv})
  if(NOT EXISTS ${pub}/tandem/${name})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/include/tandem/${name} ${pub}/tandem/${name} SYMBOLIC)
  endif()
  if(NOT EXISTS ${priv}/${name})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/src/${name} ${priv}/${name} SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC ${pub} PRIVATE ${priv})
  add_library(${target}_internals INTERFACE)
  target_include_directories(${target}_internals INTERFACE ${priv})
endfunction()

# tandem_module(NAME DEPS...): one static library per module, built from every
# .cpp under src/NAME, linking only the modules it names.
function(tandem_module name)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  add_library(tandem_${name} STATIC ${srcs})
  target_link_libraries(tandem_${name} PUBLIC tandem_settings ${ARGN})
  tandem_module_includes(tandem_${name} ${name})
endfunction()

# tandem_part(MODULE PART HEADERS h... DEPS d...): one library of a module that holds
# several things (analysis: the cost model, benchmarks, reports, ...), built from
# src/MODULE/PART/*.cpp. Its public headers are the listed files of include/tandem/MODULE
# (visible to what links it, through links in module_include/MODULE_PART); its private
# headers, src/MODULE/PART/*.hpp, are included as "MODULE/x.hpp" by itself alone.
function(tandem_part module part)
  cmake_parse_arguments(P "" "" "HEADERS;DEPS" ${ARGN})
  set(target tandem_${module}_${part})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${part}/*.cpp)
  add_library(${target} STATIC ${srcs})
  target_link_libraries(${target} PUBLIC tandem_settings ${P_DEPS})
  set(pub ${CMAKE_BINARY_DIR}/module_include/${module}_${part})
  set(priv ${CMAKE_BINARY_DIR}/module_private/${module}_${part})
  file(MAKE_DIRECTORY ${pub}/tandem/${module} ${priv})
  foreach(h ${P_HEADERS})
    if(NOT EXISTS ${pub}/tandem/${module}/${h})
      file(CREATE_LINK ${CMAKE_SOURCE_DIR}/include/tandem/${module}/${h}
           ${pub}/tandem/${module}/${h} SYMBOLIC)
    endif()
  endforeach()
  if(NOT EXISTS ${priv}/${module})
    file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR}/${part} ${priv}/${module} SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC ${pub} PRIVATE ${priv})
endfunction()
