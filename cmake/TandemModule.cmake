# Shared compile settings for every target of the project.
add_library(tandem_settings INTERFACE)
target_compile_options(tandem_settings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
  -Wno-unused-parameter
  $<$<CONFIG:Release>:-O3>)
target_include_directories(tandem_settings INTERFACE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)

# tandem_module(NAME DEPS...): one static library per module, built from every
# .cpp under src/NAME, linking only the modules it names.
function(tandem_module name)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  if(srcs)
    add_library(tandem_${name} STATIC ${srcs})
    target_link_libraries(tandem_${name} PUBLIC tandem_settings ${ARGN})
  else()  # a module whose first sources are not written yet
    add_library(tandem_${name} INTERFACE)
    target_link_libraries(tandem_${name} INTERFACE tandem_settings ${ARGN})
  endif()
endfunction()
