# warren::compiled: warren's compiled mode (include/warren/compiled.hpp). A static library
# that instantiates the standard brokers once (warren::broker, warren::concurrent_broker,
# their queues and deliveries), so that the programs linking it compile only their own
# code; it defines WARREN_COMPILED_LIB for them. Header-only warren::warren is unchanged.
# Used by warren's own CMakeLists.txt and by its installed package (warrenConfig.cmake),
# which builds the library in the consumer's build tree from the installed source, so
# the package stays architecture independent.
function(warren_add_compiled_library source)
    if(TARGET warren::compiled)
        return()
    endif()
    add_library(warren_compiled STATIC EXCLUDE_FROM_ALL "${source}")
    add_library(warren::compiled ALIAS warren_compiled)
    target_link_libraries(warren_compiled PUBLIC warren::warren)
    target_compile_definitions(warren_compiled PUBLIC WARREN_COMPILED_LIB)
    target_compile_features(warren_compiled PUBLIC cxx_std_20)
endfunction()
