#include <warren/warren.hpp>
int main() { return 0; }
