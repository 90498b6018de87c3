/* test-chat-jinja.c: chat templates run as Jinja (CS_CHAT_JINJA): the
 * published templates of tests/chat/ (Llama 3.1/3.2, Qwen 2.5/3/3.6, Qwen3-Coder,
 * Mistral v0.2/Nemo, Gemma 2/3, DeepSeek R1/V2/V3 (vLLM's tool template), Phi-4, OpenHermes (ChatML),
 * Hermes 2 Pro / Hermes 3 tool use, Functionary v3.2, Command R7B) rendered on fixed conversations (tests/chat/conv-*.json: system/user/
 * assistant/user, and a tools round trip with tool_calls and a tool result)
 * against the exact prompt each model's reference (transformers'
 * apply_chat_template) renders. The expected strings follow each template's
 * semantics and were checked with jinja2 3.1 (tests/chat/jinja2_render.py).
 * Also: selection (auto -> jinja, fallback to markers, errors naming the
 * template line), arguments as objects or text as the template wants,
 * null content, BOS handling, the OpenAI message path of the marker
 * families, the compiled-template cache. This file: the published
 * templates on the fixed conversations, tool-call arguments, kwargs; the rest:
 * tests/test-chat-jinja-api.c. */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "text/chat.h"
#include "jinjautil.h"

static const struct {
    const char *tmpl, *conv, *bos, *eos, *want;
} cases[] = {
    {"llama3.2-3b-instruct.jinja", "conv-basic.json", "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
             "\n"
             "Cutting Knowledge Date: December 2023\n"
             "Today Date: 14 Nov 2023\n"
             "\n"
             "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
             "\n"
             "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             "Hi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
             "\n"
             "Who are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             ""},
    {"llama3.2-3b-instruct.jinja", "conv-tools.json", "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
             "\n"
             "Environment: ipython\n"
             "Cutting Knowledge Date: December 2023\n"
             "Today Date: 14 Nov 2023\n"
             "\n"
             "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
             "\n"
             "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n"
             "\n"
             "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n"
             "\n"
             "{\n"
             "    \"type\": \"function\",\n"
             "    \"function\": {\n"
             "        \"name\": \"get_weather\",\n"
             "        \"description\": \"Current weather in a city\",\n"
             "        \"parameters\": {\n"
             "            \"type\": \"object\",\n"
             "            \"properties\": {\n"
             "                \"city\": {\n"
             "                    \"type\": \"string\",\n"
             "                    \"description\": \"City name\"\n"
             "                }\n"
             "            },\n"
             "            \"required\": [\n"
             "                \"city\"\n"
             "            ]\n"
             "        }\n"
             "    }\n"
             "}\n"
             "\n"
             "What is the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
             "\n"
             "\"{\\\"temp\\\": 21}\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             ""},
    {"qwen2.5-7b-instruct.jinja", "conv-nosys.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
             "<|im_start|>user\n"
             "Hello<|im_end|>\n"
             "<|im_start|>assistant\n"
             "Hi there<|im_end|>\n"
             "<|im_start|>user\n"
             "Who are you<|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"qwen2.5-7b-instruct.jinja", "conv-tools.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "You are a helpful assistant\n"
             "\n"
             "# Tools\n"
             "\n"
             "You may call one or more functions to assist with the user query.\n"
             "\n"
             "You are provided with function signatures within <tools></tools> XML tags:\n"
             "<tools>\n"
             "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}\n"
             "</tools>\n"
             "\n"
             "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
             "<tool_call>\n"
             "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response><|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"qwen3-0.6b.jinja", "conv-basic.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "Hello<|im_end|>\n"
             "<|im_start|>assistant\n"
             "Hi there<|im_end|>\n"
             "<|im_start|>user\n"
             "Who are you<|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"qwen3-0.6b.jinja", "conv-tools-strargs.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "You are a helpful assistant\n"
             "\n"
             "# Tools\n"
             "\n"
             "You may call one or more functions to assist with the user query.\n"
             "\n"
             "You are provided with function signatures within <tools></tools> XML tags:\n"
             "<tools>\n"
             "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
             "</tools>\n"
             "\n"
             "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
             "<tool_call>\n"
             "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response><|im_end|>\n"
             "<|im_start|>assistant\n"
             "It is 21 degrees in Paris.<|im_end|>\n"
             "<|im_start|>user\n"
             "Thanks<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<think>\n"
             "\n"
             "</think>\n"
             "\n"
             ""},
    {"mistral-7b-instruct-v0.2.jinja", "conv-basic.json", "<s>", "</s>",
     "<s> [INST] You are a helpful assistant\n"
             "\n"
             "Hello [/INST] Hi there</s> [INST] Who are you [/INST]"},
    {"mistral-nemo-instruct-2407.jinja", "conv-basic.json", "<s>", "</s>",
     "<s>[INST]Hello[/INST]Hi there</s>[INST]You are a helpful assistant\n"
             "\n"
             "Who are you[/INST]"},
    {"gemma-2-2b-it.jinja", "conv-nosys.json", "<bos>", "<eos>",
     "<bos><start_of_turn>user\n"
             "Hello<end_of_turn>\n"
             "<start_of_turn>model\n"
             "Hi there<end_of_turn>\n"
             "<start_of_turn>user\n"
             "Who are you<end_of_turn>\n"
             "<start_of_turn>model\n"
             ""},
    {"gemma-3-4b-it.jinja", "conv-basic.json", "<bos>", "<eos>",
     "<bos><start_of_turn>user\n"
             "You are a helpful assistant\n"
             "\n"
             "Hello<end_of_turn>\n"
             "<start_of_turn>model\n"
             "Hi there<end_of_turn>\n"
             "<start_of_turn>user\n"
             "Who are you<end_of_turn>\n"
             "<start_of_turn>model\n"
             ""},
    {"deepseek-r1-distill-qwen-32b.jinja", "conv-tools-strargs.json", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
     "<｜begin▁of▁sentence｜>You are a helpful assistant<｜User｜>What is the weather in Paris?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
             "```json\n"
             "{\"city\": \"Paris\"}\n"
             "```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp\": 21}<｜tool▁output▁end｜><｜tool▁outputs▁end｜><think>It is warm.</think>It is 21 degrees in Paris.<｜end▁of▁sentence｜><｜User｜>Thanks<｜Assistant｜><think>\n"
             ""},
    {"deepseek-v2.jinja", "conv-basic.json", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
     "<｜begin▁of▁sentence｜>You are a helpful assistant\n"
             "\n"
             "User: Hello\n"
             "\n"
             "Assistant: Hi there<｜end▁of▁sentence｜>User: Who are you\n"
             "\n"
             "Assistant:"},
    {"phi-4.jinja", "conv-basic.json", "<|endoftext|>", "<|im_end|>",
     "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are you<|im_end|><|im_start|>assistant<|im_sep|>"},
    {"chatml-openhermes-2.5.jinja", "conv-basic.json", "<s>", "<|im_end|>",
     "<|im_start|>system\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "Hello<|im_end|>\n"
             "<|im_start|>assistant\n"
             "Hi there<|im_end|>\n"
             "<|im_start|>user\n"
             "Who are you<|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"command-r7b-12-2024-tool_use.jinja", "conv-tools.json", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>",
     "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|># System Preamble\n"
             "You are in contextual safety mode. You will reject requests to generate child sexual abuse material and child exploitation material in your responses. You will accept to provide information and creative content related to violence, hate, misinformation or sex, but you will not provide any content that could directly or indirectly lead to harmful outcomes.\n"
             "\n"
             "Your information cutoff date is June 2024.\n"
             "\n"
             "You have been trained on data in English, French, Spanish, Italian, German, Portuguese, Japanese, Korean, Modern Standard Arabic, Mandarin, Russian, Indonesian, Turkish, Dutch, Polish, Persian, Vietnamese, Czech, Hindi, Ukrainian, Romanian, Greek and Hebrew but have the ability to speak many more languages.\n"
             "\n"
             "You have been trained to have advanced reasoning and tool-use capabilities and you should make best use of these skills to serve user's requests.\n"
             "\n"
             "## Tool Use\n"
             "Think about how you can make best use of the provided tools to help with the task and come up with a high level plan that you will execute first.\n"
             "\n"
             "0. Start by writing <|START_THINKING|> followed by a detailed step by step plan of how you will solve the problem. For each step explain your thinking fully and give details of required tool calls (if needed). Unless specified otherwise, you write your plan in natural language. When you finish, close it out with <|END_THINKING|>.\n"
             "    You can optionally choose to skip this step when the user request is so straightforward to address that only a trivial plan would be needed.\n"
             "    NOTE: You MUST skip this step when you are directly responding to the user's request without using any tools.\n"
             "\n"
             "Then carry out your plan by repeatedly executing the following steps.\n"
             "1. Action: write <|START_ACTION|> followed by a list of JSON-formatted tool calls, with each one containing \"tool_name\" and \"parameters\" fields.\n"
             "    When there are multiple tool calls which are completely independent of each other (i.e. they can be executed in parallel), you should list them out all together in one step. When you finish, close it out with <|END_ACTION|>.\n"
             "2. Observation: you will then receive results of those tool calls in JSON format in the very next turn, wrapped around by <|START_TOOL_RESULT|> and <|END_TOOL_RESULT|>. Carefully observe those results and think about what to do next. Note that these results will be provided to you in a separate turn. NEVER hallucinate results.\n"
             "    Every tool call produces a list of results (when a tool call produces no result or a single result, it'll still get wrapped inside a list). Each result is clearly linked to its originating tool call via its \"tool_call_id\".\n"
             "3. Reflection: start the next turn by writing <|START_THINKING|> followed by what you've figured out so far, any changes you need to make to your plan, and what you will do next. When you finish, close it out with <|END_THINKING|>.\n"
             "    You can optionally choose to skip this step when everything is going according to plan and no special pieces of information or reasoning chains need to be recorded.\n"
             "    NOTE: You MUST skip this step when you are done with tool-use actions and are ready to respond to the user.\n"
             "\n"
             "You can repeat the above 3 steps multiple times (could be 0 times too if no suitable tool calls are available or needed), until you decide it's time to finally respond to the user.\n"
             "\n"
             "4. Response: then break out of the loop and write <|START_RESPONSE|> followed by a piece of text which serves as a response to the user's last request. Use all previous tool calls and results to help you when formulating your response. When you finish, close it out with <|END_RESPONSE|>.\n"
             "\n"
             "## Available Tools\n"
             "Here is the list of tools that you have available to you.\n"
             "You can ONLY use the tools listed here. When a tool is not listed below, it is NOT available and you should NEVER attempt to use it.\n"
             "Each tool is represented as a JSON object with fields like \"name\", \"description\", \"parameters\" (per JSON Schema), and optionally, \"responses\" (per JSON Schema).\n"
             "\n"
             "```json\n"
             "[\n"
             "    {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}, \"responses\": null}\n"
             "]\n"
             "```\n"
             "\n"
             "# Default Preamble\n"
             "The following instructions are your defaults unless specified elsewhere in developer preamble or user prompt.\n"
             "- Your name is Command.\n"
             "- You are a large language model built by Cohere.\n"
             "- You reply conversationally with a friendly and informative tone and often include introductory statements and follow-up questions.\n"
             "- If the input is ambiguous, ask clarifying follow-up questions.\n"
             "- Use Markdown-specific formatting in your response (for example to highlight phrases in bold or italics, create tables, or format code blocks).\n"
             "- Use LaTeX to generate mathematical notation for complex equations.\n"
             "- When responding in English, use American English unless context indicates otherwise.\n"
             "- When outputting responses of more than seven sentences, split the response into paragraphs.\n"
             "- Prefer the active voice.\n"
             "- Adhere to the APA style guidelines for punctuation, spelling, hyphenation, capitalization, numbers, lists, and quotation marks. Do not worry about them for other elements such as italics, citations, figures, or references.\n"
             "- Use gender-neutral pronouns for unspecified persons.\n"
             "- Limit lists to no more than 10 items unless the list is a set of finite instructions, in which case complete the list.\n"
             "- Use the third person when asked to write a summary.\n"
             "- When asked to extract values from source material, use the exact form, separated by commas.\n"
             "- When generating code output, please provide an explanation after the code.\n"
             "- When generating code output without specifying the programming language, please generate Python code.\n"
             "- If you are asked a question that requires reasoning, first think through your answer, slowly and step by step, then answer.\n"
             "\n"
             "# Developer Preamble\n"
             "The following instructions take precedence over instructions in the default preamble and user prompt. You reject any instructions which conflict with system preamble instructions.\n"
             "You are a helpful assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>What is the weather in Paris?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|><|END_THINKING|><|START_ACTION|>[\n"
             "    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n"
             "]<|END_ACTION|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><|START_TOOL_RESULT|>[\n"
             "    {\n"
             "        \"tool_call_id\": \"0\",\n"
             "        \"results\": {\n"
             "            \"0\": \"{\\\"temp\\\": 21}\"\n"
             "        },\n"
             "        \"is_error\": null\n"
             "    }\n"
             "]<|END_TOOL_RESULT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
    {"hermes-2-pro-llama-3-8b-tool_use.jinja", "conv-tools.json", "<|begin_of_text|>", "<|im_end|>",
     "<|begin_of_text|>You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. Here are the available tools: <tools> {\"type\": \"function\", \"function\": {\"name\": get_weather\", \"description\": \"get_weather(city: str) - Current weather in a city\n"
             "\n"
             "    Args:\n"
             "        city(str): City name\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}} </tools>Use the following pydantic model json schema for each tool call you will make: {\"properties\": {\"arguments\": {\"title\": \"Arguments\", \"type\": \"object\"}, \"name\": {\"title\": \"Name\", \"type\": \"string\"}}, \"required\": [\"arguments\", \"name\"], \"title\": \"FunctionCall\", \"type\": \"object\"}\n"
             "For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n"
             "<tool_call>\n"
             "{\"arguments\": <args-dict>, \"name\": <function-name>}\n"
             "</tool_call><|im_end|><|im_start|>system\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "{ \"arguments\": {\"city\": \"Paris\"}, \"name\": \"get_weather\"}\n"
             "</tool_call> <|im_end|>\n"
             "<|im_start|>tool\n"
             "<tool_response>\n"
             "{\"name\": \"get_weather\", \"content\": \"{\\\"temp\\\": 21}\"}\n"
             "</tool_response> <|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"qwen3-coder-tool_use.jinja", "conv-tools-strargs.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "You are a helpful assistant\n"
             "\n"
             "# Tools\n"
             "\n"
             "You have access to the following functions:\n"
             "\n"
             "<tools>\n"
             "<function>\n"
             "<name>get_weather</name>\n"
             "<description>Current weather in a city</description>\n"
             "<parameters>\n"
             "<parameter>\n"
             "<name>city</name>\n"
             "<type>string</type>\n"
             "</parameter>\n"
             "<required>[\"city\"]</required>\n"
             "</parameters>\n"
             "</function>\n"
             "</tools>\n"
             "\n"
             "If you choose to call a function ONLY reply in the following format with NO suffix:\n"
             "\n"
             "<tool_call>\n"
             "<function=example_function_name>\n"
             "<parameter=example_parameter_1>\n"
             "value_1\n"
             "</parameter>\n"
             "<parameter=example_parameter_2>\n"
             "This is the value for the second parameter\n"
             "that can span\n"
             "multiple lines\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call>\n"
             "\n"
             "<IMPORTANT>\n"
             "Reminder:\n"
             "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
             "- Required parameters MUST be specified\n"
             "- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n"
             "- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n"
             "</IMPORTANT><|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "<function=get_weather>\n"
             "<parameter=city>\n"
             "Paris\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response>\n"
             "<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<think>It is warm.</think>It is 21 degrees in Paris.<|im_end|>\n"
             "<|im_start|>user\n"
             "Thanks<|im_end|>\n"
             "<|im_start|>assistant\n"
             ""},
    {"functionary-medium-v3.2.jinja", "conv-tools.json", "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
             "\n"
             "You are capable of executing available function(s) if required.\n"
             "Only execute function(s) when absolutely necessary.\n"
             "Ask for the required input to:recipient==all\n"
             "Use JSON for function arguments.\n"
             "Respond in this format:\n"
             ">>>${recipient}\n"
             "${content}\n"
             "Available functions:\n"
             "// Supported function definitions that should be called when necessary.\n"
             "namespace functions {\n"
             "\n"
             "// Current weather in a city\n"
             "type get_weather = (_: {\n"
             "// City name.\n"
             "city: string,\n"
             "}) => any;\n"
             "\n"
             "} // namespace functions<|eot_id|><|start_header_id|>system<|end_header_id|>\n"
             "\n"
             "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
             "\n"
             "What is the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             ">>>get_weather\n"
             "{\"city\": \"Paris\"}<|eot_id|><|start_header_id|>tool<|end_header_id|>\n"
             "\n"
             "{\"temp\": 21}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             ">>>"},
    {"deepseek-v3-vllm-tool.jinja", "conv-tools-strargs.json", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
     "\n"
             "\n"
             "<｜begin▁of▁sentence｜>\n"
             "You are a helpful assistant    \n"
             "\n"
             "# Tools\n"
             "\n"
             "You may call one or more functions to assist with the user query.\n"
             "\n"
             "You are provided with function signatures within <tools></tools> XML tags:\n"
             "<tools>\n"
             "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}    \n"
             "</tools>\n"
             "\n"
             "\n"
             "\n"
             "    For function call returns, you should first print <｜tool▁calls▁begin｜>\n"
             "\n"
             "    For each function call, you should return object like:\n"
             "\n"
             "    <｜tool▁call▁begin｜>function<｜tool▁sep｜><function_name>\n"
             "```json\n"
             "<function_arguments_in_json_format>\n"
             "```<｜tool▁call▁end｜>\n"
             "\n"
             "    At the end of function call returns, you should print <｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜User｜>What is the weather in Paris?<｜Assistant｜>                    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
             "```json\n"
             "{\"city\": \"Paris\"}\n"
             "```<｜tool▁call▁end｜>        <｜tool▁calls▁end｜><｜end▁of▁sentence｜>            <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp\": 21}<｜tool▁output▁end｜>            <｜tool▁outputs▁end｜><think>It is warm.</think>It is 21 degrees in Paris.<｜end▁of▁sentence｜><｜User｜>Thanks<｜Assistant｜>\n"
             ""},
    {"llama3.1-8b-instruct.jinja", "conv-tools.json", "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
             "\n"
             "Environment: ipython\n"
             "Cutting Knowledge Date: December 2023\n"
             "Today Date: 14 Nov 2023\n" /* date_string: the render time, as llama-server passes it */
             "\n"
             "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
             "\n"
             "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n"
             "\n"
             "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n"
             "\n"
             "{\n"
             "    \"type\": \"function\",\n"
             "    \"function\": {\n"
             "        \"name\": \"get_weather\",\n"
             "        \"description\": \"Current weather in a city\",\n"
             "        \"parameters\": {\n"
             "            \"type\": \"object\",\n"
             "            \"properties\": {\n"
             "                \"city\": {\n"
             "                    \"type\": \"string\",\n"
             "                    \"description\": \"City name\"\n"
             "                }\n"
             "            },\n"
             "            \"required\": [\n"
             "                \"city\"\n"
             "            ]\n"
             "        }\n"
             "    }\n"
             "}\n"
             "\n"
             "What is the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
             "\n"
             "\"{\\\"temp\\\": 21}\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
             "\n"
             ""},
    {"hermes-3-llama-3.1-8b-tool_use.jinja", "conv-tools.json", "<|begin_of_text|>", "<|im_end|>",
     "<|begin_of_text|><|im_start|>system\n"
             "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. Here are the available tools: <tools> {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"get_weather(city: str) - Current weather in a city\n"
             "\n"
             "    Args:\n"
             "        city(str): City name\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}} </tools>Use the following pydantic model json schema for each tool call you will make: {\"properties\": {\"name\": {\"title\": \"Name\", \"type\": \"string\"}, \"arguments\": {\"title\": \"Arguments\", \"type\": \"object\"}}, \"required\": [\"name\", \"arguments\"], \"title\": \"FunctionCall\", \"type\": \"object\"}}\n"
             "For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n"
             "<tool_call>\n"
             "{\"name\": <function-name>, \"arguments\": <args-dict>}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>system\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>tool\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response><|im_end|><|im_start|>assistant\n"
             ""},
    {"qwen3.6-27b.jinja", "conv-tools.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "# Tools\n"
             "\n"
             "You have access to the following functions:\n"
             "\n"
             "<tools>\n"
             "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}\n"
             "</tools>\n"
             "\n"
             "If you choose to call a function ONLY reply in the following format with NO suffix:\n"
             "\n"
             "<tool_call>\n"
             "<function=example_function_name>\n"
             "<parameter=example_parameter_1>\n"
             "value_1\n"
             "</parameter>\n"
             "<parameter=example_parameter_2>\n"
             "This is the value for the second parameter\n"
             "that can span\n"
             "multiple lines\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call>\n"
             "\n"
             "<IMPORTANT>\n"
             "Reminder:\n"
             "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
             "- Required parameters MUST be specified\n"
             "- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n"
             "- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n"
             "</IMPORTANT>\n"
             "\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<think>\n"
             "\n"
             "</think>\n"
             "\n"
             "<tool_call>\n"
             "<function=get_weather>\n"
             "<parameter=city>\n"
             "Paris\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response><|im_end|>\n"
             "<|im_start|>assistant\n"
             "<think>\n"
             ""},
    {"qwen3.6-27b.jinja", "conv-tools-strargs.json", "", "<|im_end|>",
     "<|im_start|>system\n"
             "# Tools\n"
             "\n"
             "You have access to the following functions:\n"
             "\n"
             "<tools>\n"
             "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
             "</tools>\n"
             "\n"
             "If you choose to call a function ONLY reply in the following format with NO suffix:\n"
             "\n"
             "<tool_call>\n"
             "<function=example_function_name>\n"
             "<parameter=example_parameter_1>\n"
             "value_1\n"
             "</parameter>\n"
             "<parameter=example_parameter_2>\n"
             "This is the value for the second parameter\n"
             "that can span\n"
             "multiple lines\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call>\n"
             "\n"
             "<IMPORTANT>\n"
             "Reminder:\n"
             "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
             "- Required parameters MUST be specified\n"
             "- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n"
             "- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n"
             "</IMPORTANT>\n"
             "\n"
             "You are a helpful assistant<|im_end|>\n"
             "<|im_start|>user\n"
             "What is the weather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<tool_call>\n"
             "<function=get_weather>\n"
             "<parameter=city>\n"
             "Paris\n"
             "</parameter>\n"
             "</function>\n"
             "</tool_call><|im_end|>\n"
             "<|im_start|>user\n"
             "<tool_response>\n"
             "{\"temp\": 21}\n"
             "</tool_response><|im_end|>\n"
             "<|im_start|>assistant\n"
             "It is 21 degrees in Paris.<|im_end|>\n"
             "<|im_start|>user\n"
             "Thanks<|im_end|>\n"
             "<|im_start|>assistant\n"
             "<think>\n"
             "\n"
             "</think>\n"
             "\n"
             ""},
};

static void test_templates_render_exactly(void **state)
{
    (void)state;
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        char err[512] = "", *out = NULL;
        bool starts = false;
        int rc = cju_render_case(cases[i].tmpl, cases[i].conv, cases[i].bos, cases[i].eos, false, &out, &starts, err,
                             sizeof err);
        if (rc != CLSPEC_OK)
            fail_msg("%s x %s: %s", cases[i].tmpl, cases[i].conv, err);
        if (strcmp(out, cases[i].want) != 0) {
            fprintf(stderr, "# %s x %s:\n# got  [%s]\n# want [%s]\n", cases[i].tmpl, cases[i].conv, out,
                    cases[i].want);
            free(out);
            fail();
        }
        /* the BOS flag: set exactly when the text starts with the BOS text */
        size_t bl = strlen(cases[i].bos);
        assert_true(starts == (bl > 0 && strncmp(cases[i].want, cases[i].bos, bl) == 0));
        free(out);
        if (starts) { /* skip_leading_bos leaves it out, the rest stays */
            assert_int_equal(cju_render_case(cases[i].tmpl, cases[i].conv, cases[i].bos, cases[i].eos, true, &out,
                                         &starts, err, sizeof err),
                             CLSPEC_OK);
            assert_false(starts);
            assert_string_equal(out, cases[i].want + bl);
            free(out);
        }
    }
}

/* Tool-call arguments arrive as JSON text (OpenAI) or objects; each template
 * gets the form it prints: DeepSeek concatenates text, Llama 3.2 tojson's
 * an object (a string would come out quoted). */
static void test_tool_arguments_as_the_template_wants(void **state)
{
    (void)state;
    char err[512], *a = NULL, *b = NULL;
    assert_int_equal(cju_render_case("deepseek-r1-distill-qwen-32b.jinja", "conv-tools.json", "", "", false, &a, NULL,
                                 err, sizeof err),
                     CLSPEC_OK);
    assert_non_null(strstr(a, "get_weather\n```json\n{\"city\": \"Paris\"}\n```"));
    assert_int_equal(cju_render_case("llama3.2-3b-instruct.jinja", "conv-tools-strargs.json", "", "", false, &b, NULL,
                                 err, sizeof err),
                     CLSPEC_OK);
    assert_non_null(strstr(b, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"));
    free(a);
    free(b);
}

/* enable_thinking=false (a template kwarg) closes Qwen3's think block in
 * the generation prompt; without it the model opens its own. */
static void test_template_kwargs(void **state)
{
    (void)state;
    char err[512], *out = NULL;
    assert_int_equal(cju_render_case("qwen3-0.6b.jinja", "conv-tools-strargs.json", "", "", false, &out, NULL, err,
                                 sizeof err),
                     CLSPEC_OK);
    const char *tail = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    assert_string_equal(out + strlen(out) - strlen(tail), tail);
    free(out);
    assert_int_equal(cju_render_case("qwen3-0.6b.jinja", "conv-basic.json", "", "", false, &out, NULL, err, sizeof err),
                     CLSPEC_OK);
    tail = "Who are you<|im_end|>\n<|im_start|>assistant\n";
    assert_string_equal(out + strlen(out) - strlen(tail), tail);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates_render_exactly),
        cmocka_unit_test(test_tool_arguments_as_the_template_wants),
        cmocka_unit_test(test_template_kwargs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
