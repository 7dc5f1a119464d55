#pragma once
// GET /: a chat page (HTML, CSS and script inline, nothing fetched from elsewhere) that
// sends the conversation to /v1/chat/completions and shows the reply as it streams.
#include <string_view>

namespace tandem::serve {
std::string_view chat_page_html();
}
