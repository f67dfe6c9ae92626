//! Built-in workflow templates: a named set of defaults a request can start from.

use serde_json::json;

use crate::domain::Workflow;

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: &'static str,
    pub description: &'static str,
    pub workflow: Workflow,
    pub required_tools: &'static [&'static str],
    pub required_retrievers: &'static [&'static str],
    pub system_message: &'static str,
    /// How many earlier messages the prompt may carry.
    pub memory_window: u32,
    pub temperature: f64,
    /// Longest answer, unless the request or the conversation says otherwise.
    pub max_tokens: Option<u32>,
    pub max_tool_calls: Option<u32>,
    pub max_documents: Option<u32>,
}

impl Template {
    /// The template's defaults as `WorkflowTemplateInfo.default_params`.
    pub fn default_params(&self) -> serde_json::Value {
        let mut params = json!({
            "system_message": self.system_message,
            "memory_window": self.memory_window,
            "temperature": self.temperature,
        });
        if let Some(limit) = self.max_tokens {
            params["max_tokens"] = limit.into();
        }
        if let Some(limit) = self.max_tool_calls {
            params["max_tool_calls"] = limit.into();
        }
        if let Some(limit) = self.max_documents {
            params["max_documents"] = limit.into();
        }
        params
    }
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "general_chat",
        description: "General conversation with a helpful assistant.",
        workflow: Workflow::Plain,
        required_tools: &[],
        required_retrievers: &[],
        system_message: "You are a helpful, friendly assistant. Answer clearly and concisely.",
        memory_window: 20,
        temperature: 0.7,
        max_tokens: Some(1024),
        max_tool_calls: None,
        max_documents: None,
    },
    Template {
        name: "document_qa",
        description: "Answers questions from the user's documents, citing its sources.",
        workflow: Workflow::Rag,
        required_tools: &[],
        required_retrievers: &["documents"],
        system_message: "Answer using only the provided sources. Cite them by number, and say so when they do not contain the answer.",
        memory_window: 10,
        temperature: 0.2,
        max_tokens: Some(1024),
        max_tool_calls: None,
        max_documents: Some(5),
    },
    Template {
        name: "code_assistant",
        description: "Helps write, review and debug code, using tools for exact computation.",
        workflow: Workflow::Tools,
        required_tools: &["calculator"],
        required_retrievers: &[],
        system_message: "You are an expert programmer. Give working code, explain briefly, and use tools for anything that needs exact computation.",
        memory_window: 30,
        temperature: 0.1,
        max_tokens: Some(4096),
        max_tool_calls: Some(10),
        max_documents: None,
    },
    Template {
        name: "customer_support",
        description: "Support agent that looks things up in the knowledge base and can use tools.",
        workflow: Workflow::Full,
        required_tools: &["get_time"],
        required_retrievers: &["documents"],
        system_message: "You are a patient customer support agent. Use the knowledge base sources and tools; never invent policies.",
        memory_window: 20,
        temperature: 0.3,
        max_tokens: Some(1024),
        max_tool_calls: Some(5),
        max_documents: Some(3),
    },
    Template {
        name: "research_assistant",
        description: "Researches a question across the user's documents and summarises with citations.",
        workflow: Workflow::Rag,
        required_tools: &[],
        required_retrievers: &["documents"],
        system_message: "You are a careful research assistant. Synthesise the sources, compare them, and cite each claim by source number.",
        memory_window: 15,
        temperature: 0.4,
        max_tokens: Some(2048),
        max_tool_calls: None,
        max_documents: Some(10),
    },
    Template {
        name: "data_analyst",
        description: "Analyses numbers and data, computing with tools rather than guessing.",
        workflow: Workflow::Tools,
        required_tools: &["calculator"],
        required_retrievers: &[],
        system_message: "You are a precise data analyst. Use the calculator for every computation and show the figures you used.",
        memory_window: 20,
        temperature: 0.1,
        max_tokens: Some(2048),
        max_tool_calls: Some(15),
        max_documents: None,
    },
];

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_found_by_its_name() {
        for template in TEMPLATES {
            assert_eq!(find(template.name), Some(template));
        }
        assert_eq!(find("nope"), None);
    }

    #[test]
    fn every_template_bounds_its_answers_within_what_a_request_may_ask() {
        for template in TEMPLATES {
            let limit = template.default_params()["max_tokens"].as_u64();
            assert!(
                limit.is_some_and(|l| (1..=8192).contains(&l)),
                "{}",
                template.name
            );
        }
    }

    #[test]
    fn tool_templates_carry_a_tool_call_limit() {
        for template in TEMPLATES {
            let uses_tools = matches!(template.workflow, Workflow::Tools | Workflow::Full);
            assert_eq!(
                uses_tools,
                template.default_params().get("max_tool_calls").is_some()
            );
        }
    }
}
